"""Keep this node's Kubo connected to the peers of its ``Peering.Peers`` configuration.

Kubo redials its peering peers by itself, but with a backoff that starts at 5 s and grows
by 1.5-2.5x per failed attempt up to 10 minutes (boxo's ``peering`` package). After a
partition of two minutes its next attempt can come half a minute after the heal, and until
then announcements (pubsub) and fetches (bitswap) between the sites wait. Every
``CHECK_S`` seconds :func:`keep_peered` dials the configured peers that are not connected;
Kubo's ``swarm connect`` also clears libp2p's dial backoff for the peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from node.errors import DaemonError, each_reached
from node.kubo import KuboClient
from node.logs import RateLimiter, kv

log = logging.getLogger("camswarm.peering")

CHECK_S = 5.0
DIAL_TIMEOUT_S = 10.0  # one round of dials; an unreachable peer fails within it


def dial_addresses(configured: Sequence[Mapping[str, Any]], connected: set[str]) -> dict[str, str]:
    """Peer id -> the multiaddr to dial, for each configured peer that is not connected."""
    out = {}
    for peer in configured:
        peer_id = str(peer.get("ID") or "")
        if not peer_id or peer_id in connected:
            continue
        addrs = [str(a) for a in peer.get("Addrs") or [] if a]
        out[peer_id] = f"{addrs[0]}/p2p/{peer_id}" if addrs else f"/p2p/{peer_id}"
    return out


async def redial_once(kubo: KuboClient, configured: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dial every configured peer that is not connected, together; the ids that answered."""
    connected = {p.peer for p in await kubo.swarm_peers()}
    missing = dial_addresses(configured, connected)
    reached = await each_reached([kubo.swarm_connect(a) for a in missing.values()])
    return [peer_id for peer_id, ok in zip(missing, reached, strict=True) if ok]


async def keep_peered(kubo_api: str, *, interval: float = CHECK_S) -> None:
    """Run until cancelled: every ``interval`` s, redial the peering peers Kubo has lost."""
    limiter = RateLimiter(60.0)
    configured: list[dict[str, Any]] | None = None
    async with KuboClient(kubo_api, timeout=DIAL_TIMEOUT_S) as kubo:
        while True:
            try:
                if configured is None:
                    configured = await kubo.peering_peers()
                for peer_id in await redial_once(kubo, configured):
                    log.info("kubo_peer_redialled", extra=kv(peer=peer_id))
            except DaemonError as exc:
                allowed, suppressed = limiter.allow("redial")
                if allowed:
                    log.warning("kubo_peering_check_failed", extra=kv(error=exc, suppressed=suppressed))
            await asyncio.sleep(interval)
