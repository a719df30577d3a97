"""Which segments ffmpeg has finished, read from its playlist: pure functions.

ffmpeg (with ``temp_file``) lists a segment in ``index.m3u8`` only once the
file is complete and renamed into place, so "listed in the playlist" is the
completion signal; file sizes are never polled. The playlist is a sliding
window, so the caller remembers what it has already journaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import m3u8


@dataclass(frozen=True)
class ListedSegment:
    filename: str
    duration: float
    start: datetime  # EXT-X-PROGRAM-DATE-TIME, UTC


class PlaylistError(ValueError):
    """ffmpeg's playlist cannot be used (a segment without a program date-time, a path)."""


def listed_segments(text: str) -> list[ListedSegment]:
    """The segments ffmpeg's playlist lists, in order; an empty or partial file gives []."""
    if not text.startswith("#EXTM3U"):
        return []
    playlist = m3u8.loads(text)
    found = []
    for segment in playlist.segments:
        name = str(segment.uri)
        if "/" in name or not name.endswith(".ts"):
            raise PlaylistError(f"unexpected segment URI {name!r}")
        moment = segment.current_program_date_time or segment.program_date_time
        if moment is None:
            raise PlaylistError(f"{name} has no EXT-X-PROGRAM-DATE-TIME")
        found.append(
            ListedSegment(
                filename=name, duration=round(float(segment.duration), 3), start=moment.astimezone(UTC)
            )
        )
    return found


def new_segments(listed: list[ListedSegment], seen: set[str]) -> list[ListedSegment]:
    """What the playlist lists that has not been handled yet, in playlist order."""
    return [s for s in listed if s.filename not in seen]
