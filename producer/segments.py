"""Which segments ffmpeg has finished, read from its playlist: pure functions.

ffmpeg (with ``temp_file``) lists a segment in ``index.m3u8`` only once the
file is complete and renamed into place, so "listed in the playlist" is the
completion signal; file sizes are never polled. The playlist is a sliding
window, so the caller remembers what it has already journaled.

ffmpeg's PROGRAM-DATE-TIME runs ahead of the footage: it is the wall clock
when the HLS muxer started, after ffmpeg had already buffered the frames it
read while probing the stream (about a second over RTSP), and every later
segment is counted on from it. :func:`clock_lead` measures that lead from the
moment the first segment was listed (its real end, give or take the wake-up);
the outbox moves the whole session back by it.
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
    listed_at: float | None = None  # wall clock (epoch s) when the recorder first read it listed


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


# A lead beyond this is not ffmpeg's probing but a late observation or a wrong clock.
MAX_LEAD_S = 10.0


def clock_lead(segment: ListedSegment) -> float:
    """Seconds the segment's PROGRAM-DATE-TIME end runs ahead of when it was listed; 0 when unknown.

    ffmpeg lists a segment the moment the next one starts, so "listed at" is
    the segment's real end. A late observation can only shrink the lead, so
    the figure errs towards ffmpeg's own clock; it is clamped to
    [0, MAX_LEAD_S].
    """
    if segment.listed_at is None:
        return 0.0
    ahead = segment.start.timestamp() + segment.duration - segment.listed_at
    return min(max(ahead, 0.0), MAX_LEAD_S)


def new_segments(listed: list[ListedSegment], seen: set[str]) -> list[ListedSegment]:
    """What the playlist lists that has not been handled yet, in playlist order."""
    return [s for s in listed if s.filename not in seen]
