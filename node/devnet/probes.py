"""Readiness probes for the devnet's daemons: each asks the service itself."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pymongo import AsyncMongoClient

from node.cluster import ClusterClient
from node.errors import DaemonError
from node.kubo import KuboClient


async def kubo_ready(api: str) -> bool:
    async with KuboClient(api, timeout=2) as kubo:
        try:
            await kubo.id()
        except DaemonError:
            return False
    return True


async def cluster_allocatable(api: str, peer_ids: set[str]) -> bool:
    """Every peer is connected and its free-space metric has reached this peer.

    Until the metrics arrive, a pin with a replication factor fails with "not
    enough peers to allocate", so "the daemon answers" is not ready enough.
    """
    async with ClusterClient(api, timeout=3) as cluster:
        try:
            peers = {p.id for p in await cluster.peers() if not p.error}
            metrics = {str(m.get("peer")) for m in await cluster.metrics("freespace")}
        except DaemonError:
            return False
    return peer_ids <= peers and peer_ids <= metrics


async def http_ok(url: str) -> bool:
    """A GET of ``url`` answers 200."""
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def catalog_ready(url: str) -> bool:
    """The port accepts connections, then a MongoDB ``ping`` succeeds.

    The plain TCP check comes first so no driver client is torn down while its
    connection attempt to a not-yet-listening server is still in flight.
    """
    parts = urlsplit(url)
    if not await _port_open(parts.hostname or "127.0.0.1", parts.port or 27017):
        return False
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        await client.admin.command("ping")
        return True
    except Exception:
        return False
    finally:
        await client.close()


async def rtsp_ready(host: str, port: int, path: str, timeout: float = 3.0) -> bool:
    """Send an RTSP DESCRIBE and expect ``RTSP/1.0 200``: the camera has a stream to offer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        url = f"rtsp://{host}:{port}/{path}"
        writer.write(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout)
        return status.startswith(b"RTSP/1.0 200")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _json_rpc(url: str, method: str, params: list[Any]) -> Any:
    timeout = aiohttp.ClientTimeout(total=3)
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url, json=body) as response:
        if response.status != 200:
            return None
        return (await response.json()).get("result")


async def json_rpc_ready(url: str) -> bool:
    """An Ethereum JSON-RPC node at ``url`` answers eth_chainId."""
    try:
        return await _json_rpc(url, "eth_chainId", []) is not None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


async def contract_deployed(url: str, address: str) -> bool:
    """The chain at ``url`` holds code at ``address`` (False when it cannot say)."""
    try:
        code = await _json_rpc(url, "eth_getCode", [address, "latest"])
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(code, str) and code not in ("0x", "0x0", "")
