from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producer.segments import ListedSegment, PlaylistError, listed_segments, new_segments

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
