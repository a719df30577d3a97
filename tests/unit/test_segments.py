from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from producer.segments import (
    MAX_LEAD_S,
    ListedSegment,
    PlaylistError,
    clock_lead,
    listed_segments,
    new_segments,
)

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.960000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T06:28:27.487+0000
seg-000000.ts
#EXTINF:2.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T06:28:30.447+0000
seg-000001.ts
"""


def test_lists_complete_segments_with_their_times() -> None:
    got = listed_segments(FFMPEG_PLAYLIST)
    assert got == [
        ListedSegment("seg-000000.ts", 2.96, datetime(2026, 11, 21, 6, 28, 27, 487000, tzinfo=UTC)),
        ListedSegment("seg-000001.ts", 2.0, datetime(2026, 11, 21, 6, 28, 30, 447000, tzinfo=UTC)),
    ]


@pytest.mark.parametrize("text", ["", "#EXTM", "garbage"], ids=["empty", "truncated", "garbage"])
def test_partial_or_empty_playlist_lists_nothing(text: str) -> None:
    assert listed_segments(text) == []


def test_segment_in_progress_is_not_listed() -> None:
    # ffmpeg writes seg-000002.ts.tmp while recording; the playlist does not name it yet.
    assert [s.filename for s in listed_segments(FFMPEG_PLAYLIST)] == ["seg-000000.ts", "seg-000001.ts"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(FFMPEG_PLAYLIST.replace("seg-000001.ts", "../x/seg-000001.ts"), id="path"),
        pytest.param(
            FFMPEG_PLAYLIST.replace("#EXT-X-PROGRAM-DATE-TIME:2026-11-21T06:28:27.487+0000\n", ""),
            id="no-date-time",
        ),
    ],
)
def test_refuses_what_ffmpeg_would_not_write(bad: str) -> None:
    with pytest.raises(PlaylistError):
        listed_segments(bad)


def test_new_segments_in_a_sliding_window() -> None:
    listed = listed_segments(FFMPEG_PLAYLIST)
    assert [s.filename for s in new_segments(listed, {"seg-000000.ts"})] == ["seg-000001.ts"]
    assert new_segments(listed, {"seg-000000.ts", "seg-000001.ts"}) == []


def _first(listed_at: float | None) -> ListedSegment:
    return dataclasses.replace(listed_segments(FFMPEG_PLAYLIST)[0], listed_at=listed_at)


@pytest.mark.parametrize(
    ("listed_after_pdt_end", "lead"),
    [
        (-1.008, 1.008),  # measured: ffmpeg's clock one probe ahead of the footage
        (0.0, 0.0),
        (0.4, 0.0),  # listed after its PDT end: no lead, never a lag
        (-60.0, MAX_LEAD_S),  # a wrong clock is not believed beyond the cap
    ],
)
def test_clock_lead_from_when_the_first_segment_was_listed(listed_after_pdt_end: float, lead: float) -> None:
    segment = _first(None)
    pdt_end = segment.start.timestamp() + segment.duration
    assert clock_lead(_first(pdt_end + listed_after_pdt_end)) == pytest.approx(lead)


def test_clock_lead_is_zero_when_not_observed_live() -> None:
    assert clock_lead(_first(None)) == 0.0  # recovered after a crash: when it was listed is unknown
