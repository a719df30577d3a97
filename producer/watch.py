"""Wake asyncio code when ffmpeg rewrites a session's playlist (watchdog/inotify, no polling).

watchdog delivers file-system events on its own thread; each watched
directory gets an ``asyncio.Event`` that the thread sets through the loop, so
the recorder simply awaits it. Events are coalesced: the recorder re-reads the
whole playlist on each wake-up, so a burst of events is one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch


class _PlaylistHandler(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event, playlist: str) -> None:
        self._loop = loop
        self._event = event
        self._playlist = playlist

    def on_any_event(self, event: FileSystemEvent) -> None:
        names = {os.path.basename(os.fsdecode(event.src_path))}
        dest = getattr(event, "dest_path", "")
        if dest:
            names.add(os.path.basename(os.fsdecode(dest)))
        if self._playlist in names and event.event_type in ("created", "modified", "moved", "closed"):
            self._loop.call_soon_threadsafe(self._event.set)


class PlaylistWatcher:
    """One inotify observer for every camera's current session directory."""

    def __init__(self) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()

    def watch(self, directory: Path, playlist: str) -> tuple[asyncio.Event, ObservedWatch]:
        """Start watching ``directory``; the event is set whenever ``playlist`` changes in it."""
        event = asyncio.Event()
        handler = _PlaylistHandler(asyncio.get_running_loop(), event, playlist)
        return event, self._observer.schedule(handler, str(directory), recursive=False)

    def unwatch(self, watch: ObservedWatch) -> None:
        with contextlib.suppress(KeyError):  # already gone (the directory was removed)
            self._observer.unschedule(watch)

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
