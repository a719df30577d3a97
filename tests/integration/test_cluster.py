"""ipfs-cluster REST client against the devnet's real cluster peers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from node.cluster import NOT_ENOUGH_PEERS, ClusterClient, Redialer
from node.errors import DaemonHTTPError
from node.kubo import KuboClient
from node.procs import poll_until


async def test_peers_are_the_devnet(devnet: dict[str, Any]) -> None:
    expected = {n["cluster_peer_id"] for n in devnet["nodes"].values()}
    async with ClusterClient(devnet["nodes"]["mirror1"]["cluster_api"]) as cluster:
        peers = await cluster.peers()
    assert {p.id for p in peers} == expected
    assert {p.peername for p in peers} == set(devnet["nodes"])
    assert {p.ipfs_id for p in peers} == {n["peer_id"] for n in devnet["nodes"].values()}


async def test_peer_add_reaches_a_peer_and_redialer_dials_the_pinned_peers(devnet: dict[str, Any]) -> None:
    """What the producer does after a partition: each peer a pin went to is asked for once more."""
    others = {n["cluster_peer_id"] for name, n in devnet["nodes"].items() if name != "producer"}
    async with ClusterClient(devnet["nodes"]["producer"]["cluster_api"]) as cluster:
        for peer_id in others:
            await cluster.peer_add(peer_id)
        with pytest.raises(DaemonHTTPError):
            await cluster.peer_add("not-a-peer-id")
        redial = Redialer(cluster)
        redial.known.update(others)
        lost = DaemonHTTPError("ipfs-cluster", "u", 500, f"{NOT_ENOUGH_PEERS} CID. Needed at least: 2.")
        assert await redial.failed(lost) == len(others)


async def test_pin_with_replication_and_expiry(devnet: dict[str, Any]) -> None:
    async with KuboClient(devnet["nodes"]["producer"]["kubo_api"]) as kubo:
        added = await kubo.add(os.urandom(64 * 1024), filename="seg.ts", pin=False)
    expire = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    peer_ids = {n["cluster_peer_id"] for n in devnet["nodes"].values()}
    async with ClusterClient(devnet["nodes"]["producer"]["cluster_api"]) as cluster:
        pin = await cluster.pin(
            added.cid,
            replication_min=2,
            replication_max=3,
            name="factory1/cam1/seg.ts",
            metadata={"factory": "factory1", "device": "cam1"},
            expire_at=expire,
        )
        assert pin.cid == added.cid
        alloc = await cluster.allocations(added.cid)
        assert (alloc.replication_min, alloc.replication_max) == (2, 3)
        assert 2 <= len(alloc.allocations) <= 3
        assert set(alloc.allocations) <= peer_ids
        assert alloc.expire_at == expire
        assert alloc.metadata == {"factory": "factory1", "device": "cam1"}
        assert alloc.name == "factory1/cam1/seg.ts"

        async def pinned_where_allocated() -> bool:
            status = await cluster.status(added.cid)
            return set(alloc.allocations) <= status.peers_with("pinned")

        await poll_until(pinned_where_allocated, timeout=60, what="pinned on every allocated peer")
        recovered = await cluster.recover(added.cid)
        assert recovered and recovered[0].cid == added.cid

        await cluster.unpin(added.cid)

        async def gone() -> bool:
            try:
                await cluster.allocations(added.cid)
            except DaemonHTTPError as exc:
                return exc.status == 404
            return False

        await poll_until(gone, timeout=30, what="pin removed from the shared state")


async def test_bad_pin_options_are_refused_before_sending(devnet: dict[str, Any]) -> None:
    async with ClusterClient(devnet["nodes"]["producer"]["cluster_api"]) as cluster:
        with pytest.raises(ValueError, match="replication_min"):
            await cluster.pin(
                "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                replication_min=3,
                replication_max=2,
            )
