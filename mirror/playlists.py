"""HLS playlists of a mirrored camera: pure composition from the segments the mirror holds.

Two playlists per camera:

- the **day** playlist (``#EXT-X-PLAYLIST-TYPE:EVENT``, ``#EXT-X-ENDLIST`` once
  the day is over) lists every segment of one UTC day in seq order, so a viewer
  can seek back within the day. It is a function of the *set* of segments:
  whatever order they arrived in, the text is the same, and a segment repaired
  later lands in its place.
- the **live** playlist is a sliding window. Its segment numbers must never go
  backwards between rewrites, so it carries a small state (:class:`LiveState`)
  from one composition to the next: the window never moves back, a hole at the
  live edge (a segment still being fetched) holds the window for up to ``hold``
  later segments, then is skipped with a discontinuity, and the discontinuity
  sequence counts the discontinuities that left the window.

An encrypted segment (HLS AES-128, see :mod:`node.segcrypt`) is preceded by
``#EXT-X-KEY:METHOD=AES-128,URI=...,IV=0x...`` wherever its key differs from
the previous listed segment's, and at the top of every playlist, so any window
is self-contained; a plaintext segment after an encrypted one gets
``#EXT-X-KEY:METHOD=NONE``. The URI is the gateway's key endpoint
(:func:`key_uri`): players fetch the key there with the viewer's session.

Every segment carries ``EXT-X-PROGRAM-DATE-TIME``. ``EXT-X-DISCONTINUITY``
marks a new recording session, a hole in seq, or a jump in time.
``EXT-X-TARGETDURATION`` is never below any listed segment's rounded duration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

import m3u8

# A segment starting further than this from its predecessor's end is a jump in time.
TIME_TOLERANCE_S = 0.5
VERSION = 6


def key_uri(factory: str, device: str, key_id: str) -> str:
    """Where a player gets a segment key: the gateway's ``GET /keys/{factory}/{device}/{key_id}``."""
    return f"/keys/{factory}/{device}/{key_id}"


@dataclass(frozen=True)
class PlaylistSegment:
    seq: int
    session: str
    uri: str  # relative to the playlist
    start: datetime  # UTC, timezone-aware
    duration: float
    key_uri: str | None = None  # set for an encrypted segment, with its IV (32 hex characters)
    iv: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)


def key_line(segment: PlaylistSegment | None) -> str:
    """The EXT-X-KEY tag in force for ``segment`` (METHOD=NONE for a plaintext one)."""
    if segment is None or segment.key_uri is None:
        return "#EXT-X-KEY:METHOD=NONE"
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{segment.key_uri}",IV=0x{segment.iv}'


def _key_object(segment: PlaylistSegment, encrypted_before: bool) -> m3u8.Key | None:
    if segment.key_uri is not None:
        return m3u8.Key("AES-128", None, uri=segment.key_uri, iv=f"0x{segment.iv}")
    return m3u8.Key("NONE", None) if encrypted_before else None


@dataclass(frozen=True)
class LiveState:
    """What the last live playlist published, carried to the next composition.

    ``media_sequence`` is the HLS number of the first listed segment and
    ``first_seq`` its seq; ``last_seq`` is the newest seq published;
    ``skipped`` holds the seqs the window jumped over (a late arrival of one of
    them must not be inserted, or the numbers of later segments would shift).
    """

    media_sequence: int = 0
    discontinuity_sequence: int = 0
    first_seq: int = -1
    last_seq: int = -1
    skipped: frozenset[int] = frozenset()


def in_seq_order(segments: Iterable[PlaylistSegment]) -> list[PlaylistSegment]:
    """Sorted by seq, one per seq (the lowest URI wins if a seq is given twice)."""
    listed = list(segments)
    if all(a.seq < b.seq for a, b in pairwise(listed)):
        return listed  # already in order, as the catalog and day index give them
    segments = listed
    by_seq: dict[int, PlaylistSegment] = {}
    for segment in sorted(segments, key=lambda s: (s.seq, s.uri)):
        by_seq.setdefault(segment.seq, segment)
    return [by_seq[k] for k in sorted(by_seq)]


def discontinuous(before: PlaylistSegment, after: PlaylistSegment) -> bool:
    """Whether a player must be told that ``after`` does not continue ``before``."""
    return (
        after.seq != before.seq + 1
        or after.session != before.session
        or abs((after.start - before.start).total_seconds() - before.duration) > TIME_TOLERANCE_S
    )


def rounded(duration: float) -> int:
    """HLS rounds EXTINF to the nearest integer when comparing with the target duration."""
    return math.floor(duration + 0.5)


def target_duration(segments: Sequence[PlaylistSegment]) -> int:
    return max([1, *(rounded(s.duration) for s in segments)])


def _playlist(
    segments: Sequence[PlaylistSegment], *, media_sequence: int, discontinuity_sequence: int
) -> m3u8.M3U8:
    playlist = m3u8.M3U8()
    playlist.version = VERSION
    playlist.is_independent_segments = True
    playlist.target_duration = target_duration(segments)
    playlist.media_sequence = media_sequence
    playlist.discontinuity_sequence = discontinuity_sequence
    encrypted_before = False
    for index, segment in enumerate(segments):
        playlist.add_segment(
            m3u8.Segment(
                uri=segment.uri,
                duration=round(segment.duration, 3),
                program_date_time=segment.start,
                discontinuity=index > 0 and discontinuous(segments[index - 1], segment),
                keyobject=_key_object(segment, encrypted_before),
            )
        )
        encrypted_before = encrypted_before or segment.key_uri is not None
    return playlist


def _whole(segments: Iterable[PlaylistSegment], playlist_type: str, *, ended: bool) -> str:
    """Every segment in seq order, numbered from 0 (a playlist that only ever grows).

    Written line by line rather than through m3u8's model: a day of 2 s segments is 43,200
    entries, which the model takes over a second to build and dump (the same tags, see
    tests/unit/test_playlists.py, which checks both against each other through m3u8's parser).
    """
    ordered = in_seq_order(segments)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f"#EXT-X-TARGETDURATION:{target_duration(ordered)}",
        f"#EXT-X-PLAYLIST-TYPE:{playlist_type.upper()}",
    ]
    before: PlaylistSegment | None = None
    key_in_force = key_line(None)  # a playlist starts unencrypted
    for segment in ordered:
        key = key_line(segment)
        if key != key_in_force:
            lines.append(key)
            key_in_force = key
        if before is not None and discontinuous(before, segment):
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{segment.start.isoformat(timespec='milliseconds')}")
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(segment.uri)
        before = segment
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def compose_day(segments: Iterable[PlaylistSegment], *, ended: bool) -> str:
    """The day's EVENT playlist; ``ended`` adds ENDLIST (the day is over)."""
    return _whole(segments, "event", ended=ended)


def compose_vod(segments: Iterable[PlaylistSegment]) -> str:
    """A finished playlist of a time range (``PLAYLIST-TYPE:VOD`` and ``ENDLIST``), in seq order."""
    return _whole(segments, "vod", ended=True)


def _visible(ordered: list[PlaylistSegment], hold: int, published_through: int) -> list[PlaylistSegment]:
    """What the live edge may show: past what was published, it stops at a hole unless
    ``hold`` segments already wait behind it (then the hole is skipped)."""
    for index in range(1, len(ordered)):
        after = ordered[index]
        if (
            after.seq > published_through
            and after.seq != ordered[index - 1].seq + 1
            and len(ordered) - index < hold
        ):
            return ordered[:index]
    return ordered


def compose_live(
    segments: Iterable[PlaylistSegment],
    *,
    window: int,
    previous: LiveState | None = None,
    hold: int = 3,
) -> tuple[str, LiveState]:
    """The live playlist over the newest ``window`` segments, and the state for the next call.

    A segment keeps its HLS number across rewrites: the window never moves
    back, and a seq the window jumped over is never inserted afterwards.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    state = previous or LiveState()
    ordered = [s for s in in_seq_order(segments) if s.seq >= state.first_seq and s.seq not in state.skipped]
    visible = _visible(ordered, hold, state.last_seq)
    shown = visible[-window:]
    if not shown:
        empty: str = _playlist([], media_sequence=state.media_sequence, discontinuity_sequence=0).dumps()
        return empty, state
    moved = len(visible) - len(shown)  # how far the window's start moved past visible[0]
    dsn = state.discontinuity_sequence
    for index in range(1, moved + 1):
        if discontinuous(visible[index - 1], visible[index]):
            dsn += 1
    jumped = {
        seq
        for index in range(1, len(visible))
        for seq in range(visible[index - 1].seq + 1, visible[index].seq)
    }
    first = shown[0]
    new_state = LiveState(
        media_sequence=state.media_sequence + moved,
        discontinuity_sequence=dsn,
        first_seq=first.seq,
        last_seq=max(state.last_seq, shown[-1].seq),
        skipped=frozenset(seq for seq in state.skipped | jumped if seq > first.seq),
    )
    text: str = _playlist(shown, media_sequence=new_state.media_sequence, discontinuity_sequence=dsn).dumps()
    return text, new_state
