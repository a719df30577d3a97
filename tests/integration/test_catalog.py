"""The catalog against the devnet's real FerretDB."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from node.catalog import Catalog, CatalogUnavailable
from node.devnet.state import free_ports

T0 = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)


def _doc(device: str, seq: int, cid: str = "bafy-first") -> dict[str, Any]:
    return {
        "factory": "factory1",
        "device": device,
        "seq": seq,
        "cid": cid,
        "session": "20261121T060000Z",
        "filename": f"seg-{seq:06d}.ts",
        "start": T0 + timedelta(seconds=2 * seq),
        "end": T0 + timedelta(seconds=2 * seq + 2),
        "duration": 2.0,
        "size": 1000,
        "created_at": datetime.now(UTC),
    }


async def test_upsert_is_idempotent_and_queries_are_ordered(devnet: dict[str, Any]) -> None:
    device = f"cam-{os.urandom(3).hex()}"
    async with Catalog(devnet["catalog"], database="camswarm_test") as catalog:
        await catalog.ensure_indexes()
        await catalog.ensure_indexes()  # idempotent
        for seq in (2, 0, 1):
            assert await catalog.upsert_segment(_doc(device, seq)) is True
        assert await catalog.upsert_segment(_doc(device, 1, cid="bafy-retry")) is False
        by_seq = await catalog.segments_by_seq("factory1", device, 0, 10)
        assert [d["seq"] for d in by_seq] == [0, 1, 2]
        assert by_seq[1]["cid"] == "bafy-first", "a retry never overwrites the first record"
        window = await catalog.segments_between(
            "factory1", device, T0 + timedelta(seconds=1), T0 + timedelta(seconds=4)
        )
        assert [d["seq"] for d in window] == [1]
        assert window[0]["start"] == T0 + timedelta(seconds=2)

        await catalog.set_camera_state("factory1", device, {"state": "up", "last_seq": 2})
        await catalog.set_camera_state("factory1", device, {"state": "down"})
        state = await catalog.camera_state("factory1", device)
        assert state is not None
        assert (state["state"], state["last_seq"]) == ("down", 2)
        with pytest.raises(ValueError, match="lacks"):
            await catalog.upsert_segment({"factory": "f"})


async def test_unreachable_catalog_is_a_clear_error() -> None:
    (port,) = free_ports(1)
    async with Catalog(f"mongodb://127.0.0.1:{port}/", timeout=0.5) as catalog:
        with pytest.raises(CatalogUnavailable, match="unreachable"):
            await catalog.upsert_segment(_doc("cam1", 0))


async def test_expired_sessions_are_purged(devnet: dict[str, Any]) -> None:
    tag = os.urandom(4).hex()
    now = datetime.now(UTC)
    async with Catalog(devnet["catalog"], database="camswarm_test") as catalog:
        await catalog.put_session(
            f"old-{tag}", {"username": "a", "csrf": "x", "expires": now - timedelta(hours=1)}
        )
        await catalog.put_session(
            f"new-{tag}", {"username": "b", "csrf": "y", "expires": now + timedelta(hours=1)}
        )
        assert await catalog.delete_sessions_before(now) >= 1
        assert await catalog.get_session(f"old-{tag}") is None
        assert (await catalog.get_session(f"new-{tag}") or {}).get("username") == "b"
        await catalog.delete_session(f"new-{tag}")
