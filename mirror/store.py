"""The mirror's store on disk: segment files, a per-day index, playlists.

Layout under ``store_dir``::

    <factory>/<device>/live.m3u8             live sliding window (URIs: <day>/<file>)
    <factory>/<device>/live.json             LiveState of the last live rewrite
    <factory>/<device>/<YYYY-MM-DD>/<file>   segment files, named as the producer published them
    <factory>/<device>/<YYYY-MM-DD>/day.m3u8 the day's EVENT playlist (ENDLIST once over)
    <factory>/<device>/<YYYY-MM-DD>/segments.jsonl  one line per stored segment

An encrypted segment is stored as fetched (ciphertext: size and sha256 checks
are of what the producer added); its index line carries ``key_id`` and ``iv``
and the playlists point players at the gateway's key endpoint. A mirror never
holds a key.

A segment is written to a temporary file, synced and renamed into place, and
only then appended (synced) to the day's ``segments.jsonl``: the index never
names a file that is not complete. A file without an index line (a crash in
between) is fetched again and replaced with identical bytes. Deleting a day is
deleting its directory, index included, so files and index cannot disagree.

File I/O here is blocking; the service calls it from a worker thread. The
in-memory view (:class:`CameraIndex`) is only touched on the event loop.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mirror.playlists import LiveState, PlaylistSegment, key_uri
from mirror.seqset import SeqSet
from node.announce import FILENAME, NAME, Announcement, format_start, parse_start
from node.files import write_atomic
from node.layout import day_name, is_day_name
from node.segcrypt import IV_HEX
from node.segcrypt import KEY_ID as SEGMENT_KEY_ID

INDEX = "segments.jsonl"
DAY_PLAYLIST = "day.m3u8"
LIVE_PLAYLIST = "live.m3u8"
LIVE_STATE = "live.json"
DAYS_IN_MEMORY = 3  # per camera: today, yesterday and one repaired day


@dataclass(frozen=True)
class StoredSegment:
    factory: str
    device: str
    seq: int
    session: str
    cid: str
    filename: str
    start: datetime
    duration: float
    size: int
    key_id: str | None = None  # an encrypted segment's key and IV (from its announcement)
    iv: str | None = None

    @classmethod
    def of(cls, announcement: Announcement) -> StoredSegment:
        return cls(
            factory=announcement.factory,
            device=announcement.device,
            seq=announcement.seq,
            session=announcement.session,
            cid=announcement.cid,
            filename=announcement.filename,
            start=announcement.start_time,
            duration=announcement.duration,
            size=announcement.size,
            key_id=announcement.key_id,
            iv=announcement.iv,
        )

    @property
    def day(self) -> str:
        return day_name(self.start)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)

    def playlist_segment(self, *, in_day_dir: bool) -> PlaylistSegment:
        uri = self.filename if in_day_dir else f"{self.day}/{self.filename}"
        key = None if self.key_id is None else key_uri(self.factory, self.device, self.key_id)
        return PlaylistSegment(self.seq, self.session, uri, self.start, self.duration, key, self.iv)

    def to_line(self) -> str:
        # A plaintext segment's line is what it was before encryption existed.
        fields: dict[str, Any] = {k: v for k, v in asdict(self).items() if v is not None}
        fields["start"] = format_start(self.start)
        return json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str) -> StoredSegment:
        """Parse one index line; ValueError (or KeyError/TypeError) when it is not one."""
        obj = json.loads(line)
        segment = cls(**{**obj, "start": parse_start(obj["start"])})
        if not (NAME.fullmatch(segment.factory) and NAME.fullmatch(segment.device)):
            raise ValueError("bad camera name")
        if not FILENAME.fullmatch(segment.filename) or type(segment.seq) is not int:
            raise ValueError("bad filename or seq")
        if (segment.key_id is None) != (segment.iv is None) or not (
            segment.key_id is None
            or (SEGMENT_KEY_ID.fullmatch(segment.key_id) and IV_HEX.fullmatch(str(segment.iv)))
        ):
            raise ValueError("bad key_id or iv")
        return segment


@dataclass
class DaySummary:
    segments: int = 0
    bytes: int = 0
    lowest: int | None = None
    highest: int | None = None

    def count(self, segment: StoredSegment) -> None:
        self.segments += 1
        self.bytes += segment.size
        self.lowest = segment.seq if self.lowest is None else min(self.lowest, segment.seq)
        self.highest = segment.seq if self.highest is None else max(self.highest, segment.seq)


@dataclass
class CameraIndex:
    """What the mirror holds of one camera (in memory, rebuilt from disk at start)."""

    factory: str
    device: str
    root: Path
    seqs: SeqSet = field(default_factory=SeqSet)
    floor: int = 0  # seqs below were dropped by retention: never repaired or re-admitted
    days: dict[str, DaySummary] = field(default_factory=dict)
    recent: dict[int, StoredSegment] = field(default_factory=dict)  # the newest segments, for live
    live_state: LiveState | None = None
    _loaded: OrderedDict[str, dict[int, StoredSegment]] = field(default_factory=OrderedDict)

    @property
    def key(self) -> str:
        return f"{self.factory}/{self.device}"

    def has(self, seq: int) -> bool:
        return seq < self.floor or seq in self.seqs

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.days.values())

    def remember(self, segment: StoredSegment, *, keep_recent: int) -> None:
        """Account a segment just made durable on disk."""
        self.seqs.add(segment.seq)
        self.days.setdefault(segment.day, DaySummary()).count(segment)
        loaded = self._loaded.get(segment.day)
        if loaded is not None:
            loaded[segment.seq] = segment
        self.recent[segment.seq] = segment
        while len(self.recent) > keep_recent:  # one over at most: drop the oldest, no re-sort
            del self.recent[min(self.recent)]

    def day_segments(self, day: str) -> dict[int, StoredSegment] | None:
        """The day's segments when loaded (see :meth:`Store.load_day`)."""
        loaded = self._loaded.get(day)
        if loaded is not None:
            self._loaded.move_to_end(day)
        return loaded

    def cache_day(self, day: str, segments: dict[int, StoredSegment]) -> None:
        self._loaded[day] = segments
        self._loaded.move_to_end(day)
        while len(self._loaded) > DAYS_IN_MEMORY:
            self._loaded.popitem(last=False)

    def forget_day(self, day: str, seqs: list[int]) -> None:
        summary = self.days.pop(day, None)
        self._loaded.pop(day, None)
        for seq in seqs:
            self.seqs.discard(seq)
            self.recent.pop(seq, None)
        if summary is not None and summary.highest is not None:
            lowest = self.seqs.lowest
            cap = summary.highest + 1 if lowest is None else min(summary.highest + 1, lowest)
            self.floor = max(self.floor, cap)


class Store:
    """Blocking file operations on the store directory (run them in a worker thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def camera_dir(self, factory: str, device: str) -> Path:
        # Names were validated against node.announce.NAME (no "/", no leading "."): no escape.
        return self.root / factory / device

    def segment_path(self, segment: StoredSegment) -> Path:
        return self.camera_dir(segment.factory, segment.device) / segment.day / segment.filename

    def put(self, segment: StoredSegment, data: bytes) -> Path:
        """Make one verified segment durable: file first, then its index line."""
        path = self.segment_path(segment)
        write_atomic(path, data)
        with open(path.parent / INDEX, "a", encoding="utf-8") as index:
            index.write(segment.to_line())
            index.flush()
            os.fsync(index.fileno())
        return path

    def read_day(self, factory: str, device: str, day: str) -> dict[int, StoredSegment]:
        """The day's indexed segments whose files exist (a torn last line is ignored)."""
        directory = self.camera_dir(factory, device) / day
        try:
            present = {entry.name for entry in os.scandir(directory) if entry.is_file()}
            text = (directory / INDEX).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        segments: dict[int, StoredSegment] = {}
        for line in text.splitlines():
            try:
                segment = StoredSegment.from_line(line)
            except (ValueError, KeyError, TypeError):
                continue
            if segment.filename in present and segment.factory == factory and segment.device == device:
                segments.setdefault(segment.seq, segment)
        return segments

    def cameras(self) -> Iterator[tuple[str, str]]:
        if not self.root.is_dir():
            return
        for factory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not NAME.fullmatch(factory.name):
                continue
            for device in sorted(p for p in factory.iterdir() if p.is_dir()):
                if NAME.fullmatch(device.name):
                    yield factory.name, device.name

    def days(self, factory: str, device: str) -> list[str]:
        directory = self.camera_dir(factory, device)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_dir() and is_day_name(p.name))

    def load_camera(self, factory: str, device: str, *, keep_recent: int) -> CameraIndex:
        """Rebuild a camera's in-memory index from its day directories."""
        camera = CameraIndex(factory, device, self.camera_dir(factory, device))
        days = self.days(factory, device)
        for day in days:
            segments = self.read_day(factory, device, day)
            for segment in segments.values():
                camera.remember(segment, keep_recent=keep_recent)
            if day in days[-DAYS_IN_MEMORY:]:
                camera.cache_day(day, segments)
        camera.live_state = self.read_live_state(factory, device)
        return camera

    def drop_day(self, factory: str, device: str, day: str) -> list[StoredSegment]:
        """Delete a day directory; returns the segments it held (for unpinning)."""
        segments = list(self.read_day(factory, device, day).values())
        shutil.rmtree(self.camera_dir(factory, device) / day, ignore_errors=True)
        return segments

    def write_playlist(self, path: Path, text: str) -> None:
        # Playlists are derived data: a crash loses at most one rewrite, redone on the next segment.
        write_atomic(path, text, durable=False)

    def read_live_state(self, factory: str, device: str) -> LiveState | None:
        path = self.camera_dir(factory, device) / LIVE_STATE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            return LiveState(
                media_sequence=int(obj["media_sequence"]),
                discontinuity_sequence=int(obj["discontinuity_sequence"]),
                first_seq=int(obj["first_seq"]),
                last_seq=int(obj["last_seq"]),
                skipped=frozenset(int(s) for s in obj["skipped"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_live(self, factory: str, device: str, text: str, state: LiveState) -> None:
        directory = self.camera_dir(factory, device)
        obj = {**asdict(state), "skipped": sorted(state.skipped)}
        # The state first: a playlist is never newer than the numbers it was built from.
        write_atomic(directory / LIVE_STATE, json.dumps(obj))
        self.write_playlist(directory / LIVE_PLAYLIST, text)

    def remove_stale_temporaries(self) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.rglob(".*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed
