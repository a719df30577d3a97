"""Mirror service pieces that need no daemon: catalog documents, the work queue, devnet config."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mirror.config import load_config
from mirror.service import Work, WorkQueue
from node import announce
from node.announce import AnnouncementError, from_document
from node.config import ConfigError
from node.devnet.configs import mirror_config
from tests.unit.samples import OTHER_CID, TRUSTED, draft, load_text, signed

START = datetime(2026, 11, 21, 6, 27, 5, 120000, tzinfo=UTC)


def catalog_doc(start: datetime = START, **changes: Any) -> dict[str, Any]:
    """What the catalog stores for a signed announcement: its fields, start as a datetime, and extras."""
    original = announce.decode(signed(), TRUSTED)
    doc: dict[str, Any] = dataclasses.asdict(original)
    doc.update(
        start=start,
        _id="65f0c0ffee",
        sha256="ab" * 32,
        end=start + timedelta(seconds=original.duration),
        created_at=START + timedelta(seconds=3),
    )
    doc.update(changes)
    return doc


# --- catalog documents -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(START, id="utc"),
        pytest.param(START.astimezone(timezone(timedelta(hours=2))), id="other-offset"),
        pytest.param(START.replace(tzinfo=None), id="naive-is-utc"),
    ],
)
def test_document_rebuilds_the_signed_announcement(start: datetime) -> None:
    original = announce.decode(signed(), TRUSTED)
    rebuilt = from_document(catalog_doc(start))
    assert rebuilt == original
    assert announce.decode(announce.encode(rebuilt), TRUSTED) == original


def test_document_missing_a_field_is_refused() -> None:
    for name in ("sig", "cid", "seq", "start"):
        doc = catalog_doc()
        del doc[name]
        with pytest.raises(KeyError, match=name):
            from_document(doc)


def test_document_with_altered_cid_fails_verification() -> None:
    rebuilt = from_document(catalog_doc(cid=OTHER_CID))
    with pytest.raises(AnnouncementError) as info:
        announce.decode(announce.encode(rebuilt), TRUSTED)
    assert info.value.reason == "bad_signature"


def test_document_with_shifted_start_fails_verification() -> None:
    rebuilt = from_document(catalog_doc(START + timedelta(milliseconds=1)))
    with pytest.raises(AnnouncementError) as info:
        announce.decode(announce.encode(rebuilt), TRUSTED)
    assert info.value.reason == "bad_signature"


# --- work queue ------------------------------------------------------------------------------


def work(seq: int, via: str = "live") -> Work:
    return Work(draft(seq=seq), via, received=0.0)


async def test_offer_live_refuses_when_full() -> None:
    queue = WorkQueue(live_size=2, repair_size=2)
    assert queue.offer_live(work(1)) is True
    assert queue.offer_live(work(2)) is True
    assert queue.offer_live(work(3)) is False
    assert queue.live.qsize() == 2
    assert [(await queue.get()).key[2] for _ in range(2)] == [1, 2]
    assert queue.offer_live(work(3)) is True


async def test_get_takes_live_before_repair() -> None:
    queue = WorkQueue(live_size=4, repair_size=4)
    await queue.put_repair(work(10, "repair"))
    await queue.put_repair(work(11, "repair"))
    assert queue.offer_live(work(20))
    assert queue.offer_live(work(21))
    got = [await queue.get() for _ in range(4)]
    assert [(w.via, w.key[2]) for w in got] == [("live", 20), ("live", 21), ("repair", 10), ("repair", 11)]


async def test_get_waits_for_work() -> None:
    queue = WorkQueue(live_size=4, repair_size=4)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    await queue.put_repair(work(7, "repair"))
    assert (await asyncio.wait_for(getter, 1.0)).key[2] == 7


async def test_put_repair_waits_while_full() -> None:
    queue = WorkQueue(live_size=4, repair_size=1)
    await queue.put_repair(work(1, "repair"))
    blocked = asyncio.ensure_future(queue.put_repair(work(2, "repair")))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(blocked), 0.05)
    assert not blocked.done()
    assert (await queue.get()).key[2] == 1
    await asyncio.wait_for(blocked, 1.0)
    assert (await asyncio.wait_for(queue.get(), 1.0)).key[2] == 2


# --- configuration ---------------------------------------------------------------------------


def test_devnet_mirror_config_loads(tmp_path: Path) -> None:
    producers = list(TRUSTED)
    store_dir = tmp_path / 'store "quoted" \\ dir'
    text = mirror_config(
        producers=producers,
        kubo_api="http://127.0.0.1:5102",
        catalog="mongodb://127.0.0.1:27018/",
        topic="camswarm/devnet/v1",
        store_dir=str(store_dir),
        admin_port=9282,
        catchup_interval_s=2.5,
    )
    config = load_text(tmp_path, "mirror.toml", text, load_config)
    assert config.producers == producers
    assert list(config.trusted_keys()) == producers
    node = config.node
    assert node.store_dir == store_dir
    assert node.admin_listen == "127.0.0.1:9282"
    assert (node.kubo_api, node.catalog, node.topic) == (
        "http://127.0.0.1:5102",
        "mongodb://127.0.0.1:27018/",
        "camswarm/devnet/v1",
    )
    assert node.catchup_interval_s == 2.5
    assert node.backfill_hours <= node.retention_days * 24


@pytest.mark.parametrize(("backfill", "ok"), [(24 * 2, True), (24 * 2 + 0.5, False)])
def test_backfill_must_fit_in_retention(tmp_path: Path, backfill: float, ok: bool) -> None:
    text = f'producers = ["{next(iter(TRUSTED))}"]\n[node]\nretention_days = 2\nbackfill_hours = {backfill}\n'
    if ok:
        assert load_text(tmp_path, "mirror.toml", text, load_config).node.backfill_hours == backfill
        return
    with pytest.raises(ConfigError, match="retention_days") as info:
        load_text(tmp_path, "mirror.toml", text, load_config)
    assert info.value.key == "node.backfill_hours"
