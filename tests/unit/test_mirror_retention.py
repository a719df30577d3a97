"""Retention and day playlists of the mirror service, on a store in a temporary directory.

No daemon is contacted: pinning is off and only store-side methods are called.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirror.config import MirrorConfig, MirrorNode
from mirror.service import DayWrite, Mirror
from mirror.store import DAY_PLAYLIST, Store, StoredSegment
from node.announce import key_id
from tests.unit.samples import CID, KEY

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SIZE = 1000
DAYS = ("2026-11-17", "2026-11-19", "2026-11-20", "2026-11-21")


def segment(seq: int, day: str, index: int) -> StoredSegment:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=1, seconds=2 * index)
    return StoredSegment(
        factory="factory1",
        device="cam1",
        seq=seq,
        session="20261117T000000Z",
        cid=CID,
        filename=f"{start:%H%M%S}-{seq:010d}.ts",
        start=start,
        duration=2.0,
        size=SIZE,
    )


def filled_store(root: Path, per_day: int = 3) -> dict[str, list[int]]:
    store = Store(root)
    seqs: dict[str, list[int]] = {}
    seq = 0
    for day in DAYS:
        for index in range(per_day):
            store.put(segment(seq, day, index), b"x" * SIZE)
            seqs.setdefault(day, []).append(seq)
            seq += 1
    return seqs


def mirror(root: Path, *, retention_bytes: int = 0) -> Mirror:
    node = MirrorNode(
        store_dir=root, retention_days=2, backfill_hours=24, retention_bytes=retention_bytes, pin=False
    )
    config = MirrorConfig(node=node, producers=[key_id(KEY.public_key())])
    return Mirror(config, clock=NOW.timestamp)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


async def test_days_past_retention_are_deleted_and_never_readmitted(store_root: Path) -> None:
    seqs = filled_store(store_root)
    m = mirror(store_root)
    await m.load()
    assert await m.apply_retention() == 1
    camera = m.cameras[("factory1", "cam1")].index
    assert sorted(camera.days) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert not (store_root / "factory1" / "cam1" / "2026-11-17").exists()
    # A dropped seq counts as held: a replayed announcement of it is refused, catch-up skips it.
    assert all(m._stored("factory1", "cam1", seq) for seq in seqs["2026-11-17"])
    assert camera.floor == seqs["2026-11-19"][0]
    assert camera.bytes == 9 * SIZE
    assert await m.apply_retention() == 0


async def test_byte_budget_drops_oldest_days_but_keeps_today_and_yesterday(store_root: Path) -> None:
    filled_store(store_root)
    m = mirror(store_root, retention_bytes=4 * SIZE)
    await m.load()
    dropped = await m.apply_retention()
    camera = m.cameras[("factory1", "cam1")].index
    # 11-17 by age, 11-19 by bytes; 11-20 and 11-21 stay although they exceed the budget.
    assert dropped == 2
    assert sorted(camera.days) == ["2026-11-20", "2026-11-21"]
    assert sorted(p.name for p in (store_root / "factory1" / "cam1").iterdir() if p.is_dir()) == [
        "2026-11-20",
        "2026-11-21",
    ]


async def test_finished_days_get_endlist_and_today_does_not(store_root: Path) -> None:
    filled_store(store_root)
    m = mirror(store_root)
    await m.load()
    for day in ("2026-11-20", "2026-11-21"):
        await m._write_day(("factory1", "cam1", day), DayWrite())
    camera_dir = store_root / "factory1" / "cam1"
    yesterday = (camera_dir / "2026-11-20" / DAY_PLAYLIST).read_text()
    today = (camera_dir / "2026-11-21" / DAY_PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" in yesterday and "#EXT-X-PLAYLIST-TYPE:EVENT" in yesterday
    assert "#EXT-X-ENDLIST" not in today
    assert today.count("#EXTINF") == 3


async def test_load_marks_unwritten_day_playlists_for_rewrite(store_root: Path) -> None:
    filled_store(store_root)
    m = mirror(store_root)
    await m.load()
    dirty = {day for (_, _, day), write in m.day_writes.items() if write.dirty}
    assert dirty == set(DAYS)  # no day.m3u8 was ever written


async def test_restart_does_not_redo_finished_day_playlists(store_root: Path) -> None:
    """A day playlist written after its day ended (so with ENDLIST) is left alone after a restart."""
    filled_store(store_root)
    m = mirror(store_root)
    await m.load()
    for day in DAYS:
        await m._write_day(("factory1", "cam1", day), DayWrite())
    camera_dir = store_root / "factory1" / "cam1"
    written = NOW.timestamp()
    for day in DAYS:  # as if written at NOW: after every day but today had ended
        os.utime(camera_dir / day / "segments.jsonl", (written - 60, written - 60))
        os.utime(camera_dir / day / DAY_PLAYLIST, (written, written))
    restarted = mirror(store_root)
    await restarted.load()
    await restarted.housekeeping()
    dirty = {day for (_, _, day), write in restarted.day_writes.items() if write.dirty}
    assert dirty == {"2026-11-20", "2026-11-21"}  # the newest two only (11-17 went by retention)
