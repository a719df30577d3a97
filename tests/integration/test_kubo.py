"""Kubo RPC client against real daemons of the devnet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from node import toolchain
from node.devnet.configs import kubo_private_config
from node.devnet.probes import kubo_ready
from node.devnet.state import free_ports
from node.errors import BadCID, DaemonHTTPError, DaemonTimeout, DaemonUnreachable
from node.ipfs_codec import PubsubMessage
from node.kubo import KuboClient
from node.procs import poll_until, spawn, stop_group


def _client(devnet: dict[str, Any], node: str, timeout: float = 30) -> KuboClient:
    return KuboClient(devnet["nodes"][node]["kubo_api"], timeout=timeout)


async def test_add_cat_round_trip_1mb(devnet: dict[str, Any]) -> None:
    payload = os.urandom(1 << 20)
    async with _client(devnet, "producer") as kubo:
        added = await kubo.add(payload, filename="blob.bin")
        assert added.cid.startswith("b")
        assert added.size >= len(payload)
        assert await kubo.cat(added.cid) == payload
        streamed = b"".join([chunk async for chunk in kubo.cat_stream(added.cid)])
        assert streamed == payload


async def test_add_from_path(devnet: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "seg.ts"
    path.write_bytes(os.urandom(300_000))
    async with _client(devnet, "producer") as kubo:
        by_path = await kubo.add(path, filename=path.name, only_hash=True)
        by_bytes = await kubo.add(path.read_bytes(), filename=path.name, only_hash=True)
    assert by_path.cid == by_bytes.cid


async def test_file_added_on_producer_is_fetched_through_a_mirror(devnet: dict[str, Any]) -> None:
    payload = os.urandom(512 * 1024)
    async with _client(devnet, "producer") as producer, _client(devnet, "mirror2") as mirror:
        added = await producer.add(payload)
        assert await mirror.pin_ls(added.cid) == {}
        assert await mirror.cat(added.cid, timeout=30) == payload
        await mirror.pin_add(added.cid)
        assert await mirror.pin_ls(added.cid) == {added.cid: "recursive"}
        await mirror.pin_rm(added.cid)
        assert await mirror.pin_ls(added.cid) == {}


async def _has(received: list[PubsubMessage], count: int) -> bool:
    return len(received) >= count


async def _collect(kubo: KuboClient, topic: str, count: int, out: list[PubsubMessage]) -> None:
    async for message in kubo.pubsub_sub(topic):
        out.append(message)
        if len(out) == count:
            return


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param([bytes(range(256)) * 4], id="binary"),
        pytest.param([b""], id="empty"),
        pytest.param([b'{"v":1}', b"\x00\n\xff", b""], id="several-in-order"),
    ],
)
async def test_pubsub_delivers_exact_bytes(devnet: dict[str, Any], payloads: list[bytes]) -> None:
    topic = f"camswarm-test/{os.urandom(4).hex()}"
    received: list[PubsubMessage] = []
    async with _client(devnet, "producer") as producer, _client(devnet, "mirror1") as mirror:
        listener = asyncio.create_task(_collect(mirror, topic, len(payloads), received))
        try:
            mirror_id = devnet["nodes"]["mirror1"]["peer_id"]

            async def subscribed() -> bool:
                return mirror_id in await producer.pubsub_peers(topic)

            await poll_until(subscribed, timeout=30, what="mirror1 subscription seen by producer")
            assert topic in await mirror.pubsub_ls()
            for index, payload in enumerate(payloads):
                # One message in flight at a time: gossipsub gives no order between messages
                # in flight together (they may take different routes), and this test is about
                # the bytes and the client's decoding, not about pubsub's delivery order.
                await producer.pubsub_pub(topic, payload)
                await poll_until(
                    partial(_has, received, index + 1), timeout=30, what=f"message {index} at mirror1"
                )
            await asyncio.wait_for(listener, timeout=30)
        finally:
            # Await the cancelled task so its HTTP stream is closed before the clients are.
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    assert [m.data for m in received] == payloads
    assert {m.sender for m in received} == {devnet["nodes"]["producer"]["peer_id"]}
    assert all(m.topics == (topic,) for m in received)
    assert len({m.seqno for m in received}) == len(payloads)


async def test_mfs_directory_cid_changes_when_a_file_is_linked(devnet: dict[str, Any]) -> None:
    day = f"/camswarm-test/{os.urandom(4).hex()}/2026/11/21"
    async with _client(devnet, "producer") as kubo:
        await kubo.files_mkdir(day)
        empty = await kubo.files_stat(day)
        assert empty.type == "directory"
        added = await kubo.add(os.urandom(4096), filename="seg1.ts")
        await kubo.files_cp(added.cid, f"{day}/seg1.ts")
        linked = await kubo.files_stat(day)
        assert linked.cid != empty.cid
        assert (await kubo.files_stat(f"{day}/seg1.ts")).cid == added.cid
        await kubo.files_rm(f"{day}/seg1.ts")
        assert (await kubo.files_stat(day)).cid == empty.cid
        with pytest.raises(DaemonHTTPError, match="does not exist"):
            await kubo.files_stat(f"{day}/seg1.ts")


async def test_swarm_and_id(devnet: dict[str, Any]) -> None:
    async with _client(devnet, "mirror1") as kubo:
        ident = await kubo.id()
        assert ident["ID"] == devnet["nodes"]["mirror1"]["peer_id"]
        peers = {p.peer for p in await kubo.swarm_peers()}
        assert devnet["nodes"]["producer"]["peer_id"] in peers
        await kubo.swarm_connect(devnet["nodes"]["mirror2"]["swarm"])


async def test_name_publish_and_resolve(devnet: dict[str, Any]) -> None:
    async with _client(devnet, "producer") as kubo:
        added = await kubo.add(b"index", filename="index.json")
        entry = await kubo.name_publish(added.cid, lifetime="1h")
        assert entry.value == f"/ipfs/{added.cid}"
        assert await kubo.name_resolve(entry.name) == f"/ipfs/{added.cid}"


async def test_errors_are_mapped(devnet: dict[str, Any]) -> None:
    (port,) = free_ports(1)
    async with KuboClient(f"http://127.0.0.1:{port}", timeout=2) as nobody:
        with pytest.raises(DaemonUnreachable):
            await nobody.id()
    async with _client(devnet, "producer", timeout=2) as kubo:
        with pytest.raises(BadCID):
            await kubo.cat("not-a-cid")
        with pytest.raises(BadCID):
            await kubo.pin_add("QmShort")
        # A well-formed CID nobody has: Kubo keeps searching, so our deadline fires.
        missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        with pytest.raises(DaemonTimeout):
            await kubo.cat(missing, timeout=1.5)


@pytest_asyncio.fixture(loop_scope="session")
async def outsider(tmp_path: Path) -> AsyncIterator[str]:
    """A Kubo node with the devnet's settings but without its swarm key."""
    ipfs = str(toolchain.require(toolchain.tool_paths().ipfs))
    repo = tmp_path / "outsider"
    env = {**os.environ, "IPFS_PATH": str(repo), "IPFS_TELEMETRY": "off"}
    env.pop("LIBP2P_FORCE_PNET", None)
    init = await asyncio.create_subprocess_exec(
        ipfs, "init", "--profile", "test", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    assert await init.wait() == 0
    api, gateway, swarm = free_ports(3)
    config = json.loads((repo / "config").read_text())
    config = kubo_private_config(config, api_port=api, gateway_port=gateway, swarm_port=swarm, peers=[])
    (repo / "config").write_text(json.dumps(config))
    pid = spawn(
        [ipfs, "daemon"],
        log_path=tmp_path / "outsider.log",
        env={"IPFS_PATH": str(repo), "IPFS_TELEMETRY": "off"},
    )
    url = f"http://127.0.0.1:{api}"
    try:
        await poll_until(lambda: kubo_ready(url), timeout=60, what="outsider Kubo node")
        yield url
    finally:
        assert await stop_group(pid, name="outsider") in ("stopped", "killed")


async def test_node_without_swarm_key_is_kept_out(devnet: dict[str, Any], outsider: str) -> None:
    async with _client(devnet, "producer") as producer:
        added = await producer.add(os.urandom(2048), filename="secret.ts")
    async with KuboClient(outsider, timeout=15) as kubo:
        with pytest.raises(DaemonHTTPError):
            await kubo.swarm_connect(devnet["nodes"]["producer"]["swarm"])
        assert devnet["nodes"]["producer"]["peer_id"] not in {p.peer for p in await kubo.swarm_peers()}
        with pytest.raises(DaemonTimeout):
            await kubo.cat(added.cid, timeout=5)
