"""The gateway's pure media helpers: ranges, days, timelines, relinking playlists."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import m3u8
import pytest

from gateway.media import BadRequest, overlapping, parse_day, parse_instant, parse_range, relink, timeline
from mirror.playlists import PlaylistSegment, compose_live, compose_vod

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def doc(seq: int, start_s: float, duration: float = 2.0) -> dict[str, object]:
    start = T0 + timedelta(seconds=start_s)
    return {"seq": seq, "start": start, "end": start + timedelta(seconds=duration), "filename": f"{seq}.ts"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T08:00:00Z", T0),
        ("2026-11-21T09:00:00+01:00", T0),
        ("2026-11-21T08:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("2026-11-21T09:00:00 01:00", T0),  # '+' decoded as a space from a query string
    ],
)
def test_instants_are_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_instant("start", text) == expected


@pytest.mark.parametrize(
    "text",
    [None, "", "yesterday", "2026-11-21T08:00:00", "2026-13-01T00:00:00Z", "../../etc", "\x00", "9" * 100],
)
def test_bad_instants_are_refused_naming_the_parameter(text: str | None) -> None:
    with pytest.raises(BadRequest, match="start"):
        parse_instant("start", text)


def test_range_must_be_ordered_and_bounded() -> None:
    assert parse_range("2026-11-21T08:00:00Z", "2026-11-21T08:01:00Z", max_seconds=60) == (
        T0,
        T0 + timedelta(minutes=1),
    )
    with pytest.raises(BadRequest, match="after"):
        parse_range("2026-11-21T08:00:00Z", "2026-11-21T08:00:00Z", max_seconds=60)
    with pytest.raises(BadRequest, match="maximum"):
        parse_range("2026-11-21T08:00:00Z", "2026-11-21T08:01:01Z", max_seconds=60)


def test_days() -> None:
    today = date(2026, 11, 21)
    assert parse_day(None, today) == today
    assert parse_day("2026-11-20", today) == date(2026, 11, 20)
    for bad in ("2026-02-30", "20261121", "../../x", "2026-11-21x", "\x00"):
        with pytest.raises(BadRequest):
            parse_day(bad, today)


def test_timeline_joins_contiguous_segments_and_lists_gaps() -> None:
    docs = [doc(0, 0), doc(1, 2), doc(2, 4.3), doc(3, 60), doc(4, 62)]
    result = timeline(docs, T0.date(), now=T0 + timedelta(seconds=100))
    assert [(s["start"], s["end"], s["segments"]) for s in result["spans"]] == [
        ("2026-11-21T08:00:00.000Z", "2026-11-21T08:00:06.300Z", 3),
        ("2026-11-21T08:01:00.000Z", "2026-11-21T08:01:04.000Z", 2),
    ]
    assert [g["start"] for g in result["gaps"]] == [
        "2026-11-21T00:00:00.000Z",
        "2026-11-21T08:00:06.300Z",
        "2026-11-21T08:01:04.000Z",
    ]
    assert result["gaps"][-1]["end"] == "2026-11-21T08:01:40.000Z"  # today: up to now, not midnight
    assert result["recorded_s"] == 10.3


def test_a_past_day_without_recording_is_one_gap() -> None:
    result = timeline([], date(2026, 11, 20), now=T0)
    assert result["spans"] == []
    assert result["gaps"] == [{"start": "2026-11-20T00:00:00.000Z", "end": "2026-11-21T00:00:00.000Z"}]


def test_overlapping_keeps_partial_segments_at_both_ends() -> None:
    docs = [doc(3, 6), doc(0, 0), doc(1, 2), doc(2, 4)]
    chosen = overlapping(docs, T0 + timedelta(seconds=1), T0 + timedelta(seconds=4.5))
    assert [d["seq"] for d in chosen] == [0, 1, 2]
    assert overlapping(docs, T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)) == [docs[2]]


def _segments(count: int) -> list[PlaylistSegment]:
    return [
        PlaylistSegment(seq, "s", f"2026-11-21/{seq}.ts", T0 + timedelta(seconds=2 * seq), 2.0)
        for seq in range(count)
    ]


def test_relink_replaces_uris_and_keeps_numbering() -> None:
    text, _ = compose_live(_segments(8), window=4)
    linked = m3u8.loads(relink(text, lambda uri: f"/media/x/{uri}?sig=1"))
    original = m3u8.loads(text)
    assert linked.media_sequence == original.media_sequence
    assert [s.uri for s in linked.segments] == [f"/media/x/{s.uri}?sig=1" for s in original.segments]
    assert all(s.program_date_time for s in linked.segments)


def test_relink_stops_at_a_segment_it_cannot_link() -> None:
    text, _ = compose_live(_segments(8), window=4)
    linked = m3u8.loads(relink(text, lambda uri: None if uri.endswith("6.ts") else uri))
    assert [s.uri for s in linked.segments] == ["2026-11-21/4.ts", "2026-11-21/5.ts"]


def test_relink_cut_takes_the_unlinked_segments_tags_and_keeps_the_header() -> None:
    segments = _segments(4)
    segments[2] = PlaylistSegment(2, "other-session", segments[2].uri, segments[2].start, 2.0)
    text = compose_vod(segments)  # seq 2 starts a new session: a DISCONTINUITY before it
    cut = relink(text, lambda uri: None if uri.endswith("2.ts") else uri)
    assert "#EXT-X-DISCONTINUITY" in text and "#EXT-X-DISCONTINUITY" not in cut
    playlist = m3u8.loads(cut)
    assert [s.uri for s in playlist.segments] == [s.uri for s in segments[:2]]
    assert playlist.is_endlist and playlist.target_duration == m3u8.loads(text).target_duration
    nothing = m3u8.loads(relink(text, lambda uri: None))
    assert nothing.segments == [] and nothing.version == 6 and nothing.playlist_type == "vod"


def test_vod_playlist_is_finished_and_in_seq_order() -> None:
    segments = _segments(5)
    text = compose_vod(reversed(segments))
    playlist = m3u8.loads(text)
    assert playlist.playlist_type == "vod" and playlist.is_endlist
    assert [s.uri for s in playlist.segments] == [s.uri for s in segments]


def test_documented_gateway_example_loads() -> None:
    from pathlib import Path

    from gateway.config import load_config

    config = load_config(Path(__file__).parents[2] / "docs" / "gateway.example.toml")
    assert config.node.listen == "127.0.0.1:8090"
    assert config.node.export_max_s == 3600
