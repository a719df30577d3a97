"""Thin async client for the ipfs-cluster REST API (v1.x).

Query building is a pure function (``pin_query``) so the exact parameters we
send are covered by unit tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from node.errors import DaemonError, DaemonHTTPError, each_reached
from node.http_client import HTTPDaemonClient
from node.ipfs_codec import parse_cid

# A peer_add dials the other peer: bounded, so an unreachable one fails this soon.
PEER_ADD_TIMEOUT = 10.0
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class PeerPinStatus:
    peer_id: str
    peername: str
    status: str  # pinned, pinning, pin_queued, remote, unpinned, pin_error, ...
    error: str


@dataclass(frozen=True)
class PinStatus:
    cid: str
    name: str
    peers: dict[str, PeerPinStatus]

    def peers_with(self, status: str) -> set[str]:
        return {pid for pid, info in self.peers.items() if info.status == status}


@dataclass(frozen=True)
class Allocation:
    cid: str
    name: str
    allocations: list[str]
    replication_min: int
    replication_max: int
    expire_at: datetime | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class ClusterPeer:
    id: str
    peername: str
    ipfs_id: str
    error: str


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as ipfs-cluster parses ``expire-at``."""
    if moment.tzinfo is None:
        raise ValueError("expire_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse a cluster timestamp; the zero time (no expiry) maps to None."""
    if not text or text.startswith("0001-01-01"):
        return None
    cleaned = text.replace("Z", "+00:00")
    # Go prints nanoseconds; Python's fromisoformat handles at most microseconds.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", cleaned)
    return datetime.fromisoformat(cleaned)


def pin_query(
    *,
    replication_min: int = -1,
    replication_max: int = -1,
    name: str = "",
    metadata: Mapping[str, str] | None = None,
    expire_at: datetime | None = None,
) -> list[tuple[str, str]]:
    """Query parameters for ``POST /pins/{cid}``; -1 means "replicate everywhere"."""
    if replication_min != -1 and replication_min < 1:
        raise ValueError("replication_min must be >= 1 or -1")
    if replication_max != -1 and replication_max < 1:
        raise ValueError("replication_max must be >= 1 or -1")
    if replication_max != -1 and replication_min > replication_max:
        raise ValueError("replication_min must not exceed replication_max")
    if replication_min == -1 and replication_max != -1:
        raise ValueError("replication_min is -1 (everywhere) but replication_max is bounded")
    params = [("replication-min", str(replication_min)), ("replication-max", str(replication_max))]
    if name:
        params.append(("name", name))
    for key, value in sorted((metadata or {}).items()):
        if not _META_KEY.match(key):
            raise ValueError(f"metadata key {key!r} must match {_META_KEY.pattern}")
        params.append((f"meta-{key}", value))
    if expire_at is not None:
        params.append(("expire-at", format_time(expire_at)))
    return params


def decode_status(obj: Mapping[str, Any]) -> PinStatus:
    peers = {
        str(pid): PeerPinStatus(
            peer_id=str(pid),
            peername=str(info.get("peername", "")),
            status=str(info.get("status", "")),
            error=str(info.get("error", "")),
        )
        for pid, info in (obj.get("peer_map") or {}).items()
    }
    return PinStatus(cid=str(obj.get("cid", "")), name=str(obj.get("name", "")), peers=peers)


def decode_allocation(obj: Mapping[str, Any]) -> Allocation:
    return Allocation(
        cid=str(obj.get("cid", "")),
        name=str(obj.get("name", "")),
        allocations=[str(a) for a in obj.get("allocations") or []],
        replication_min=int(obj.get("replication_factor_min", 0)),
        replication_max=int(obj.get("replication_factor_max", 0)),
        expire_at=parse_time(obj.get("expire_at")),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
    )


def decode_peer(obj: Mapping[str, Any]) -> ClusterPeer:
    ipfs = obj.get("ipfs") or {}
    return ClusterPeer(
        id=str(obj.get("id", "")),
        peername=str(obj.get("peername", "")),
        ipfs_id=str(ipfs.get("id", "")) if isinstance(ipfs, dict) else "",
        error=str(obj.get("error", "")),
    )


class ClusterClient(HTTPDaemonClient):
    service = "ipfs-cluster"

    async def id(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request_json("GET", "/id")
        return result

    async def pin(
        self,
        cid: str,
        *,
        replication_min: int = -1,
        replication_max: int = -1,
        name: str = "",
        metadata: Mapping[str, str] | None = None,
        expire_at: datetime | None = None,
    ) -> Allocation:
        params = pin_query(
            replication_min=replication_min,
            replication_max=replication_max,
            name=name,
            metadata=metadata,
            expire_at=expire_at,
        )
        result = await self.request_json("POST", f"/pins/{parse_cid(cid)}", params=params)
        return decode_allocation(result)

    async def unpin(self, cid: str) -> None:
        await self.request_bytes("DELETE", f"/pins/{parse_cid(cid)}")

    async def status(self, cid: str, *, local: bool = False) -> PinStatus:
        params = [("local", "true")] if local else []
        return decode_status(await self.request_json("GET", f"/pins/{parse_cid(cid)}", params=params))

    async def allocations(self, cid: str) -> Allocation:
        return decode_allocation(await self.request_json("GET", f"/allocations/{parse_cid(cid)}"))

    async def peers(self) -> list[ClusterPeer]:
        return [decode_peer(p) for p in await self.request_ndjson("GET", "/peers")]

    async def peer_add(self, peer_id: str) -> None:
        """``POST /peers``: with CRDT consensus a no-op on the peerset, but the peer calls the
        other one (its ID over cluster RPC), which dials it again at once if it was lost."""
        await self.request_json(
            "POST", "/peers", data=json.dumps({"peer_id": peer_id}), timeout=PEER_ADD_TIMEOUT
        )

    async def metrics(self, name: str) -> list[dict[str, Any]]:
        """The latest valid metric ``name`` (e.g. ``freespace``) of every peer this peer knows."""
        found = await self.request_ndjson("GET", f"/monitor/metrics/{name}")
        return [m for m in found if isinstance(m, dict) and m.get("valid")]

    async def recover(self, cid: str | None = None) -> list[PinStatus]:
        path = f"/pins/{parse_cid(cid)}/recover" if cid else "/pins/recover"
        return [decode_status(s) for s in await self.request_ndjson("POST", path)]


# ipfs-cluster's answer to a pin when fewer peers than replication_min are reachable.
NOT_ENOUGH_PEERS = "not enough peers to allocate"


class Redialer:
    """Dials the cluster peers a pin went to again when the local peer has lost them.

    After a partition, ipfs-cluster 1.1.6 dials its lost peers only every 30 s (its
    ``reBootstrapInterval``, not configurable), and until then every pin that needs more than
    the local peer fails with "not enough peers to allocate". ``failed`` reacts to that error by
    asking the local peer to call each peer it has pinned to (``peer_add``), which reconnects
    in a second or two; at most once per ``interval`` seconds, whatever the number of cameras.
    """

    def __init__(
        self, cluster: ClusterClient, *, interval: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cluster = cluster
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._busy = False
        self.known: set[str] = set()

    def pinned(self, allocation: Allocation) -> None:
        """Remember the peers a pin was allocated to."""
        self.known.update(allocation.allocations)

    async def failed(self, error: BaseException) -> int:
        """After a failed pin: the number of peers dialled again (0 unless peers were lost)."""
        if not isinstance(error, DaemonHTTPError) or NOT_ENOUGH_PEERS not in error.message:
            return 0
        now = self._clock()
        if self._busy or now - self._last < self._interval:
            return 0
        self._busy, self._last = True, now
        try:
            if not self.known:  # nothing pinned since a restart: the peers the local peer lists
                with contextlib.suppress(DaemonError):
                    self.known.update(p.id for p in await self._cluster.peers() if p.id)
            # Together: a peer still unreachable costs one dial timeout, not one each.
            reached = await each_reached([self._cluster.peer_add(p) for p in sorted(self.known)])
        finally:
            self._busy = False
        return sum(reached)
