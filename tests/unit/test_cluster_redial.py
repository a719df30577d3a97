"""The producer's answer to a cluster peer that lost its peers: dial them again, at most so often."""

from __future__ import annotations

from typing import Any

import pytest

from node.cluster import Allocation, ClusterClient, ClusterPeer, Redialer
from node.errors import DaemonHTTPError, DaemonUnreachable

pytestmark = pytest.mark.unit

NOT_ENOUGH = DaemonHTTPError(
    "ipfs-cluster",
    "http://c/pins/x",
    500,
    "not enough peers to allocate CID. Needed at least: 2. Wanted at most: 3. Available candidates: 1.",
)


class FakeCluster:
    """Records peer_add calls; ``down`` peers fail as unreachable."""

    def __init__(self, listed: list[str], down: set[str] | None = None) -> None:
        self.listed = listed
        self.down = down or set()
        self.added: list[str] = []

    async def peers(self) -> list[ClusterPeer]:
        return [ClusterPeer(id=p, peername=p, ipfs_id="", error="") for p in self.listed]

    async def peer_add(self, peer_id: str) -> None:
        self.added.append(peer_id)
        if peer_id in self.down:
            raise DaemonUnreachable("ipfs-cluster", "http://c/peers", "no route")


def allocation(*peers: str) -> Allocation:
    return Allocation("cid", "name", list(peers), 2, 3, None, {})


def redialer(cluster: FakeCluster, now: list[float]) -> Redialer:
    fake: Any = cluster
    client: ClusterClient = fake
    return Redialer(client, interval=2.0, clock=lambda: now[0])


async def test_only_a_lack_of_peers_triggers_dials() -> None:
    cluster, now = FakeCluster([]), [100.0]
    redial = redialer(cluster, now)
    redial.pinned(allocation("a", "b"))
    for other in (
        DaemonHTTPError("ipfs-cluster", "u", 500, "pin queue full"),
        DaemonUnreachable("ipfs-cluster", "u", "refused"),
        ValueError("not enough peers to allocate"),
    ):
        assert await redial.failed(other) == 0
    assert cluster.added == []
    assert await redial.failed(NOT_ENOUGH) == 2
    assert sorted(cluster.added) == ["a", "b"]


async def test_dials_at_most_once_per_interval() -> None:
    cluster, now = FakeCluster([]), [100.0]
    redial = redialer(cluster, now)
    redial.pinned(allocation("a"))
    assert await redial.failed(NOT_ENOUGH) == 1
    now[0] += 1.9
    assert await redial.failed(NOT_ENOUGH) == 0  # a second camera failing at once
    now[0] += 0.2
    assert await redial.failed(NOT_ENOUGH) == 1
    assert cluster.added == ["a", "a"]


async def test_without_pins_yet_it_dials_the_listed_peers_and_counts_reached_ones() -> None:
    cluster, now = FakeCluster(["a", "b", "c"], down={"c"}), [0.0]
    redial = redialer(cluster, now)
    assert await redial.failed(NOT_ENOUGH) == 2  # c still unreachable
    assert sorted(cluster.added) == ["a", "b", "c"]
    assert redial.known == {"a", "b", "c"}


async def test_a_bug_in_a_dial_is_raised_not_counted_as_unreachable() -> None:
    class Broken(FakeCluster):
        async def peer_add(self, peer_id: str) -> None:
            raise TypeError("unexpected keyword argument 'json'")  # the first version's bug

    redial = redialer(Broken([]), [0.0])
    redial.pinned(allocation("a"))
    with pytest.raises(TypeError):
        await redial.failed(NOT_ENOUGH)
