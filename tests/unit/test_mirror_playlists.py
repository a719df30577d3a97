"""Playlist composition: pure, order-independent for the day, never backwards for live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.playlists import (
    LiveState,
    PlaylistSegment,
    _playlist,
    compose_day,
    compose_live,
    compose_vod,
    in_seq_order,
    key_uri,
    rounded,
    target_duration,
)

T0 = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)


def timeline(
    durations: list[float],
    sessions: list[int] | None = None,
    gaps: set[int] | None = None,
    keys: list[int | None] | None = None,
) -> list[PlaylistSegment]:
    """Back-to-back segments; ``gaps`` are seqs preceded by a 30 s jump in time; ``keys`` number
    each segment's key (None: plaintext)."""
    out = []
    start = T0
    for seq, duration in enumerate(durations):
        if gaps and seq in gaps:
            start += timedelta(seconds=30)
        session = f"S{(sessions or [0] * len(durations))[seq]}"
        key = (keys or [None] * len(durations))[seq]
        uri, iv = (None, None) if key is None else (key_uri("f1", "cam1", f"k{key:022d}"), f"{key:032x}")
        out.append(PlaylistSegment(seq, session, f"{seq:06d}.ts", start, duration, uri, iv))
        start += timedelta(seconds=duration)
    return out


def parsed(text: str) -> m3u8.M3U8:
    return m3u8.loads(text)


def test_day_playlist_tags() -> None:
    segs = timeline([2.96, 2.0, 2.0, 2.0], sessions=[0, 0, 1, 1], gaps={2})
    text = compose_day(segs, ended=False)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
    playlist = parsed(text)
    assert [s.uri for s in playlist.segments] == [s.uri for s in segs]
    assert [bool(s.discontinuity) for s in playlist.segments] == [False, False, True, False]
    assert all(s.program_date_time is not None for s in playlist.segments)
    assert playlist.target_duration == 3
    assert "#EXT-X-ENDLIST" in compose_day(segs, ended=True)


def test_hole_in_seq_is_a_discontinuity() -> None:
    segs = timeline([2.0] * 5)
    del segs[2]
    playlist = parsed(compose_day(segs, ended=False))
    assert [bool(s.discontinuity) for s in playlist.segments] == [False, False, True, False]


def test_target_duration_rounds_like_hls() -> None:
    assert [rounded(d) for d in (0.4, 1.5, 2.49, 2.5, 9.99)] == [0, 2, 2, 3, 10]
    assert target_duration(timeline([2.0, 2.6, 1.0])) == 3
    assert target_duration([]) == 1


durations = st.lists(st.sampled_from([1.0, 2.0, 2.04, 2.96, 3.5]), min_size=1, max_size=25)


@given(durations, st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_day_playlist_ignores_arrival_order(lengths: list[float], rnd: object) -> None:
    segs = timeline(lengths)
    shuffled = list(segs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert compose_day(shuffled + shuffled[:3], ended=False) == compose_day(segs, ended=False)
    playlist = parsed(compose_day(segs, ended=False))
    assert playlist.target_duration >= max(rounded(d) for d in lengths)


@given(
    st.integers(min_value=1, max_value=40),
    st.randoms(use_true_random=False),
    st.integers(min_value=1, max_value=8),
    st.sets(st.integers(min_value=0, max_value=39), max_size=4),
)
@settings(max_examples=150, deadline=None)
def test_live_numbers_never_go_backwards(count: int, rnd: object, window: int, never: set[int]) -> None:
    segs = [
        s for s in timeline([2.0] * count, sessions=[i // 10 for i in range(count)]) if s.seq not in never
    ]
    # Mostly in order, with some late arrivals, like concurrent fetches.
    arrival = list(segs)
    for i in range(len(arrival) - 1):
        if rnd.random() < 0.3:  # type: ignore[attr-defined]
            arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    state: LiveState | None = None
    held: list[PlaylistSegment] = []
    numbers: dict[str, int] = {}
    last_ms = last_dsn = -1
    for segment in arrival:
        held.append(segment)
        text, state = compose_live(held, window=window, previous=state)
        playlist = parsed(text)
        assert len(playlist.segments) <= window
        ms, dsn = playlist.media_sequence or 0, playlist.discontinuity_sequence or 0
        assert ms >= last_ms and dsn >= last_dsn
        last_ms, last_dsn = ms, dsn
        seqs = [int(s.uri[:6]) for s in playlist.segments]
        assert seqs == sorted(seqs)
        for index, seg in enumerate(playlist.segments):
            number = ms + index
            assert numbers.setdefault(seg.uri, number) == number, f"{seg.uri} renumbered"
    # Once everything has arrived (no hole left), the newest segment is live.
    if segs and not never:
        assert parsed(compose_live(held, window=window, previous=state)[0]).segments[-1].uri == segs[-1].uri


def test_live_waits_for_a_late_segment_then_skips_it() -> None:
    segs = timeline([2.0] * 8)
    text, state = compose_live(segs[:3], window=4)
    assert [s.uri for s in parsed(text).segments] == ["000000.ts", "000001.ts", "000002.ts"]
    text, state = compose_live(segs[:3] + segs[4:6], window=4, previous=state, hold=3)
    assert parsed(text).segments[-1].uri == "000002.ts", "held at the hole"
    text, state = compose_live(segs[:3] + segs[4:8], window=4, previous=state, hold=3)
    playlist = parsed(text)
    assert [s.uri for s in playlist.segments] == ["000004.ts", "000005.ts", "000006.ts", "000007.ts"]
    assert state.skipped == frozenset() and playlist.discontinuity_sequence == 1
    # The late segment arrives: live does not insert it (the day playlist will).
    text2, _ = compose_live(segs, window=4, previous=state)
    assert "000003.ts" not in text2


def test_live_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        compose_live([], window=0)


def _through_the_model(segments: list[PlaylistSegment], playlist_type: str, ended: bool) -> str:
    """The same whole playlist written by m3u8's model (what the fast writer replaced)."""
    playlist = _playlist(in_seq_order(segments), media_sequence=0, discontinuity_sequence=0)
    playlist.playlist_type = playlist_type
    playlist.is_endlist = ended
    text: str = playlist.dumps()
    return text


def _meaning(text: str) -> tuple[object, ...]:
    playlist = parsed(text)
    return (
        playlist.version,
        playlist.target_duration,
        playlist.media_sequence or 0,
        playlist.playlist_type,
        playlist.is_endlist,
        playlist.is_independent_segments,
        [(s.uri, s.duration, s.program_date_time, bool(s.discontinuity), _key(s)) for s in playlist.segments],
    )


def _key(segment: m3u8.Segment) -> tuple[str, str | None, str | None]:
    """The key a player uses for ``segment``: what the last EXT-X-KEY before it says."""
    key = segment.key
    if key is None or key.method == "NONE":
        return ("NONE", None, None)
    return (key.method, key.uri, key.iv)


def _expected_key(segment: PlaylistSegment) -> tuple[str, str | None, str | None]:
    if segment.key_uri is None:
        return ("NONE", None, None)
    return ("AES-128", segment.key_uri, f"0x{segment.iv}")


KEYED = [1, 1, 1, 2, 2, None, None, 3, 3, 3]


def test_key_lines_before_each_key_run_and_none_after_encryption_ends() -> None:
    segs = timeline([2.0] * 10, sessions=[0] * 5 + [1] * 5, keys=KEYED)
    text = compose_day(segs, ended=True)
    playlist = parsed(text)
    assert [_key(s) for s in playlist.segments] == [_expected_key(s) for s in segs]
    keys = [line for line in text.splitlines() if line.startswith("#EXT-X-KEY")]
    assert keys == [
        f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/f1/cam1/k{1:022d}",IV=0x{1:032x}',
        f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/f1/cam1/k{2:022d}",IV=0x{2:032x}',
        "#EXT-X-KEY:METHOD=NONE",
        f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/f1/cam1/k{3:022d}",IV=0x{3:032x}',
    ]
    lines = text.splitlines()
    first_segment = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-PROGRAM-DATE-TIME"))
    assert lines[first_segment - 1] == keys[0], "the key comes before the first segment's tags"


def test_plaintext_playlists_have_no_key_lines() -> None:
    text = compose_day(timeline([2.0] * 4), ended=False)
    assert "#EXT-X-KEY" not in text


@given(st.integers(0, 9), st.integers(1, 10))
@settings(max_examples=60, deadline=None)
def test_every_live_window_is_self_contained(start: int, window: int) -> None:
    """Whatever part of the key runs a live window shows, each segment gets its own key."""
    segs = timeline([2.0] * 10, sessions=[0] * 5 + [1] * 5, keys=KEYED)
    previous = LiveState(media_sequence=start, first_seq=start, last_seq=start - 1)
    text, _ = compose_live(segs, window=window, previous=previous)
    playlist = parsed(text)
    shown = {s.uri: s for s in segs}
    assert playlist.segments, "the window shows something"
    assert [_key(s) for s in playlist.segments] == [_expected_key(shown[s.uri]) for s in playlist.segments]
    if shown[playlist.segments[0].uri].key_uri is not None:
        assert text.index("#EXT-X-KEY") < text.index("#EXTINF"), "the window opens with its key"


@given(
    st.lists(st.floats(min_value=0.2, max_value=12.0), min_size=0, max_size=30),
    st.lists(st.integers(0, 2), min_size=30, max_size=30),
    st.sets(st.integers(0, 29)),
    st.booleans(),
    st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=30, max_size=30),
)
@settings(max_examples=80, deadline=None)
def test_whole_playlists_mean_what_the_m3u8_model_writes(
    lengths: list[float], sessions: list[int], gaps: set[int], ended: bool, keys: list[int | None]
) -> None:
    segs = timeline(lengths, sessions=sessions[: len(lengths)], gaps=gaps, keys=keys[: len(lengths)])
    assert _meaning(compose_day(segs, ended=ended)) == _meaning(_through_the_model(segs, "event", ended))
    assert _meaning(compose_vod(segs)) == _meaning(_through_the_model(segs, "vod", True))
