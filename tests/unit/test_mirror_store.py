"""The mirror's store on disk: index lines, day directories, live state, retention."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mirror.playlists import LiveState
from mirror.store import (
    INDEX,
    LIVE_PLAYLIST,
    LIVE_STATE,
    CameraIndex,
    Store,
    StoredSegment,
)
from node.announce import format_start
from node.files import write_atomic
from node.layout import day_name
from tests.unit.samples import CID, draft

DAY1 = datetime(2026, 11, 20, 23, 59, 50, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC)


def segment(seq: int, start: datetime = DAY2, **changes: Any) -> StoredSegment:
    """Seq ``seq`` of factory1/cam1 starting ``start``, 2 s long, ``100 + seq`` bytes."""
    base = StoredSegment.of(draft(seq=seq, filename=f"seg-{seq:06d}.ts", size=100 + seq))
    return replace(base, start=start, duration=2.0, **changes)


def payload(seg: StoredSegment) -> bytes:
    return bytes([seg.seq % 256]) * seg.size


def put(store: Store, *segments: StoredSegment) -> None:
    for seg in segments:
        store.put(seg, payload(seg))


def day_dir(store: Store, day: str) -> Path:
    return store.camera_dir("factory1", "cam1") / day


# --- StoredSegment index lines ---------------------------------------------------------------


def test_line_round_trip() -> None:
    seg = StoredSegment.of(draft())
    line = seg.to_line()
    assert line.endswith("\n") and line.count("\n") == 1
    assert StoredSegment.from_line(line) == seg
    assert json.loads(line)["start"] == "2026-11-21T06:27:05.120Z"
    assert (seg.cid, seg.seq, seg.size, seg.day) == (CID, 41, 1_048_576, "2026-11-21")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("filename", "../x.ts", id="filename-escapes"),
        pytest.param("filename", "x.mp4", id="filename-not-ts"),
        pytest.param("factory", ".hidden", id="factory-hidden"),
        pytest.param("factory", "a/b", id="factory-slash"),
        pytest.param("device", "", id="device-empty"),
        pytest.param("seq", "41", id="seq-string"),
        pytest.param("seq", 41.0, id="seq-float"),
        pytest.param("seq", True, id="seq-bool"),
        pytest.param("start", "2026-11-21 06:27:05", id="start-format"),
    ],
)
def test_from_line_rejects(field: str, value: object) -> None:
    obj = json.loads(StoredSegment.of(draft()).to_line())
    obj[field] = value
    with pytest.raises(ValueError):  # noqa: PT011 - every rejection is a plain ValueError
        StoredSegment.from_line(json.dumps(obj))


@pytest.mark.parametrize(
    "line",
    [
        pytest.param('{"seq": 1}', id="missing-fields"),
        pytest.param(StoredSegment.of(draft()).to_line()[:-10], id="torn"),
    ],
)
def test_from_line_rejects_incomplete(line: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        StoredSegment.from_line(line)


def test_day_name_is_the_utc_day() -> None:
    late_evening = datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert day_name(late_evening) == "2026-11-21"
    early_morning = datetime(2026, 11, 21, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert day_name(early_morning) == "2026-11-20"
    assert day_name(DAY1) == "2026-11-20" and day_name(DAY2) == "2026-11-21"


# --- Store ----------------------------------------------------------------------------------


def test_put_writes_file_and_index_line(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first, second = segment(5), segment(6, DAY2 + timedelta(seconds=2))
    path = store.put(first, b"\x00segment five\xff")
    assert path == tmp_path / "factory1" / "cam1" / "2026-11-21" / "seg-000005.ts"
    assert path.read_bytes() == b"\x00segment five\xff"
    store.put(second, payload(second))
    assert (path.parent / INDEX).read_text() == first.to_line() + second.to_line()
    assert {p.name for p in path.parent.iterdir()} == {INDEX, "seg-000005.ts", "seg-000006.ts"}


def test_put_files_by_utc_day(tmp_path: Path) -> None:
    store = Store(tmp_path)
    evening = datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    path = store.put(segment(1, evening), b"x")
    assert path.parent.name == "2026-11-21"


def test_read_day_ignores_torn_line_and_missing_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put(store, segment(1), segment(2), segment(3))
    directory = day_dir(store, "2026-11-21")
    (directory / "seg-000002.ts").unlink()
    with open(directory / INDEX, "a") as index:
        index.write(segment(4).to_line()[:25])  # a crash mid-append
    (directory / "seg-000004.ts").write_bytes(payload(segment(4)))
    days = store.read_day("factory1", "cam1", "2026-11-21")
    assert days == {1: segment(1), 3: segment(3)}
    assert store.read_day("factory1", "cam1", "2026-11-22") == {}


def test_read_day_ignores_lines_of_another_camera(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put(store, segment(1))
    directory = day_dir(store, "2026-11-21")
    stray = segment(2, device="cam2")
    (directory / stray.filename).write_bytes(b"x")
    with open(directory / INDEX, "a") as index:
        index.write(stray.to_line())
    assert list(store.read_day("factory1", "cam1", "2026-11-21")) == [1]


def test_load_camera_rebuilds_the_index(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put(store, segment(1, DAY1), segment(2, DAY1 + timedelta(seconds=2)), segment(4), segment(5))
    state = LiveState(
        media_sequence=3, discontinuity_sequence=1, first_seq=2, last_seq=5, skipped=frozenset({3})
    )
    store.write_live("factory1", "cam1", "#EXTM3U\n", state)
    camera = store.load_camera("factory1", "cam1", keep_recent=2)
    assert camera.seqs.runs() == [(1, 2), (4, 5)]
    assert sorted(camera.days) == ["2026-11-20", "2026-11-21"]
    assert camera.days["2026-11-20"].segments == 2
    assert (camera.days["2026-11-21"].lowest, camera.days["2026-11-21"].highest) == (4, 5)
    assert camera.bytes == sum(100 + seq for seq in (1, 2, 4, 5))
    assert sorted(camera.recent) == [4, 5]
    assert camera.live_state == state
    assert camera.day_segments("2026-11-20") == {
        1: segment(1, DAY1),
        2: segment(2, DAY1 + timedelta(seconds=2)),
    }
    assert (camera.has(3), camera.has(4), camera.floor) == (False, True, 0)


def test_live_state_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.read_live_state("factory1", "cam1") is None
    state = LiveState(
        media_sequence=7, discontinuity_sequence=2, first_seq=9, last_seq=14, skipped=frozenset({12, 10})
    )
    store.write_live("factory1", "cam1", "#EXTM3U\n#live\n", state)
    assert store.read_live_state("factory1", "cam1") == state
    camera_dir = store.camera_dir("factory1", "cam1")
    assert (camera_dir / LIVE_PLAYLIST).read_text() == "#EXTM3U\n#live\n"
    (camera_dir / LIVE_STATE).write_text('{"media_sequence": 1}')
    assert store.read_live_state("factory1", "cam1") is None, "a damaged state is ignored"


def test_drop_day_removes_the_directory(tmp_path: Path) -> None:
    store = Store(tmp_path)
    put(store, segment(1, DAY1), segment(2, DAY1 + timedelta(seconds=2)), segment(3))
    dropped = store.drop_day("factory1", "cam1", "2026-11-20")
    assert sorted(s.seq for s in dropped) == [1, 2]
    assert not day_dir(store, "2026-11-20").exists()
    assert store.days("factory1", "cam1") == ["2026-11-21"]
    assert list(store.read_day("factory1", "cam1", "2026-11-21")) == [3]
    assert store.drop_day("factory1", "cam1", "2026-11-20") == []


def test_forget_day_raises_the_floor(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old = [segment(seq, DAY1 - timedelta(seconds=2 * (10 - seq))) for seq in range(10) if seq != 6]
    new = [segment(seq, DAY2 + timedelta(seconds=2 * (seq - 10))) for seq in range(10, 15)]
    put(store, *old, *new)
    camera = store.load_camera("factory1", "cam1", keep_recent=128)
    assert not camera.has(6)
    dropped = store.drop_day("factory1", "cam1", "2026-11-20")
    camera.forget_day("2026-11-20", [s.seq for s in dropped])
    assert camera.floor == 10
    assert all(camera.has(seq) for seq in range(15)), "dropped seqs (and the hole 6) are never refetched"
    assert not camera.has(15)
    assert camera.seqs.runs() == [(10, 14)]
    assert list(camera.days) == ["2026-11-21"]
    assert camera.bytes == sum(100 + seq for seq in range(10, 15))
    assert camera.day_segments("2026-11-20") is None
    assert min(camera.recent) == 10


def test_forget_day_never_covers_kept_seqs() -> None:
    camera = CameraIndex("factory1", "cam1", Path("unused"))
    # A late-arriving segment of day 1 has a seq above day 2's lowest.
    for seg in (segment(1, DAY1), segment(9, DAY1), segment(5), segment(6)):
        camera.remember(seg, keep_recent=128)
    camera.forget_day("2026-11-20", [1, 9])
    assert camera.floor == 5
    assert (camera.has(4), camera.has(5), camera.has(6), camera.has(7)) == (True, True, True, False)


def test_cameras_skips_invalid_names(tmp_path: Path) -> None:
    store = Store(tmp_path / "missing")
    assert list(store.cameras()) == []
    store = Store(tmp_path)
    for relative in ("factory1/cam1", "factory1/.hidden", "factory2/cam2", ".hidden/cam1", "bad name/cam1"):
        (tmp_path / relative).mkdir(parents=True)
    (tmp_path / "factory1" / "file.txt").write_text("not a camera")
    assert list(store.cameras()) == [("factory1", "cam1"), ("factory2", "cam2")]


def test_days_lists_only_day_directories(tmp_path: Path) -> None:
    store = Store(tmp_path)
    camera_dir = store.camera_dir("factory1", "cam1")
    for name in ("2026-11-21", "2026-11-20", "2026-13-01", "2026-1-02", "tmp"):
        (camera_dir / name).mkdir(parents=True)
    assert store.days("factory1", "cam1") == ["2026-11-20", "2026-11-21"]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert Store(tmp_path / "missing").remove_stale_temporaries() == 0
    put(store, segment(1))
    directory = day_dir(store, "2026-11-21")
    (directory / ".seg-000002.ts.tmp").write_bytes(b"half")
    (tmp_path / "factory1" / "cam1" / ".live.json.tmp").write_text("{")
    (directory / "keep.tmp").write_text("not hidden: not ours")
    assert store.remove_stale_temporaries() == 2
    assert {p.name for p in directory.iterdir()} == {INDEX, "keep.tmp", "seg-000001.ts"}
    assert not (tmp_path / "factory1" / "cam1" / ".live.json.tmp").exists()


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_leaves_no_temporary(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "a" / "b" / "file.bin"
    write_atomic(path, b"one", durable=durable)
    write_atomic(path, b"two", durable=durable)
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_playlist_segment_uri(tmp_path: Path) -> None:
    seg = segment(3)
    assert seg.playlist_segment(in_day_dir=True).uri == "seg-000003.ts"
    assert seg.playlist_segment(in_day_dir=False).uri == "2026-11-21/seg-000003.ts"
    assert format_start(seg.end) == "2026-11-21T00:00:02.000Z"


def test_index_lines_carry_an_encrypted_segments_key_and_iv(tmp_path: Path) -> None:
    store = Store(tmp_path)
    plain = segment(1)
    keyed = replace(segment(2), key_id="k" + "A" * 22, iv="ab" * 16)
    put(store, plain, keyed)
    assert "key_id" not in plain.to_line(), "a plaintext line is what it was before encryption"
    got = store.read_day(plain.factory, plain.device, plain.day)
    assert got[1] == plain and got[2] == keyed
    listed = keyed.playlist_segment(in_day_dir=True)
    assert (listed.key_uri, listed.iv) == (f"/keys/{keyed.factory}/{keyed.device}/{keyed.key_id}", "ab" * 16)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"key_id": "k" + "A" * 22}, id="key-without-iv"),
        pytest.param({"key_id": "../x", "iv": "ab" * 16}, id="bad-key-id"),
        pytest.param({"key_id": "k" + "A" * 22, "iv": "AB" * 16}, id="bad-iv"),
    ],
)
def test_bad_key_fields_make_an_index_line_unreadable(changes: dict[str, str]) -> None:
    line = json.loads(segment(1).to_line())
    with pytest.raises(ValueError, match="key_id or iv"):
        StoredSegment.from_line(json.dumps({**line, **changes}))
