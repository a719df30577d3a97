"""Tamper evidence on the real devnet: period roots anchored on anvil, verified from a mirror's store.

One devnet (a producer, two cameras, one mirror, anvil with the FootageRegistry, the
anchor service) with 1-minute periods. The tests run in file order: anchors appear on
chain, `camswarm verify` says OK for every period, a flipped byte in one stored segment
makes exactly that period MISMATCH (naming the file), and a chain outage delays anchors
without stopping recording.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from node.anchors import unix
from node.catalog import Catalog
from node.chain import ANVIL_CHAIN_ID, Registry
from node.devnet import network
from node.procs import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CAMERAS = (("factory1", "cam1"), ("factory2", "cam2"))
PERIOD_S = 60
# Two whole periods, their close delay and the anchor transactions: about three minutes.
ANCHORED_TIMEOUT = 4 * PERIOD_S + 60


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("anchor-devnet")
    await network.up(directory, mirrors=1, cameras=len(CAMERAS), period_s=PERIOD_S)
    try:
        yield network.status(directory)
    finally:
        outcomes = await network.down(directory)
        assert all(o in ("stopped", "gone") for o in outcomes.values()), outcomes


async def anchors(status: dict[str, Any], factory: str, device: str) -> list[dict[str, Any]]:
    async with Catalog(status["catalog"]) as catalog:
        far = datetime(2100, 1, 1, tzinfo=UTC)
        return await catalog.anchors_between(factory, device, datetime(2000, 1, 1, tzinfo=UTC), far)


def anchored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if (r.get("chain") or {}).get("status") == "anchored"]


async def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``camswarm ARGV`` as a user runs it."""
    command = [sys.executable, "-m", "node.cli", *argv]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=False
    )


async def verify(status: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return await cli("verify", "--config", status["chain"]["anchor_config"], *args)


def iso(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


SHARED: dict[str, Any] = {}


async def test_every_camera_gets_two_periods_anchored_on_chain(net: dict[str, Any]) -> None:
    async def two_each() -> bool:
        for factory, device in CAMERAS:
            if len(anchored(await anchors(net, factory, device))) < 2:
                return False
        return True

    await poll_until(two_each, timeout=ANCHORED_TIMEOUT, what="two anchored periods per camera", interval=1)
    registry = Registry(net["chain"]["rpc"], net["chain"]["contract"])
    try:
        for factory, device in CAMERAS:
            for record in anchored(await anchors(net, factory, device))[:2]:
                on_chain = await registry.read(factory, device, unix(record["period_start"]))
                assert on_chain is not None
                assert on_chain.root.hex() == record["root"]
                assert on_chain.period_seconds == PERIOD_S
                print(
                    f"[anchor] {record['_id']}: {record['count']} segments, root {record['root'][:16]}.., "
                    f"tx {record['chain']['tx_hash']} block {record['chain']['block']}"
                )
        # One transaction per camera and period: every record has its own.
        hashes = [r["chain"]["tx_hash"] for c in CAMERAS for r in anchored(await anchors(net, *c))]
        assert len(hashes) == len(set(hashes))
    finally:
        await registry.close()


async def test_verify_is_ok_for_every_anchored_period(net: dict[str, Any]) -> None:
    factory, device = CAMERAS[0]
    records = anchored(await anchors(net, factory, device))[:2]
    start, end = records[0]["period_start"], records[-1]["period_end"]
    store = net["mirrors"]["mirror1"]["store"]
    mirror_has_them = Path(store) / factory / device

    async def stored() -> bool:  # the mirror holds every segment of both periods
        names = {p.name for p in mirror_has_them.glob("*/*.ts")}
        return all(s["filename"] in names for r in records for s in r["segments"])

    await poll_until(stored, timeout=60, what="mirror1 to hold both periods", interval=0.5)
    args = ["--factory", factory, "--device", device, "--start", iso(start), "--end", iso(end)]
    result = await verify(net, *args, "--store", store)
    print(f"[verify before] exit {result.returncode}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("OK") for line in lines), lines
    # Without --store the segments are fetched by CID through Kubo: same verdicts.
    fetched = await verify(net, *args)
    assert fetched.returncode == 0 and fetched.stdout.count("OK") == 2, fetched.stdout + fetched.stderr
    SHARED.update(args=args, store=store, records=records)


async def test_a_flipped_byte_is_a_mismatch_of_that_period_only(net: dict[str, Any]) -> None:
    factory, device = CAMERAS[0]
    records = SHARED["records"]
    name = records[1]["segments"][len(records[1]["segments"]) // 2]["filename"]
    path = next((Path(SHARED["store"]) / factory / device).glob(f"*/{name}"))
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    try:
        result = await verify(net, *SHARED["args"], "--store", SHARED["store"])
    finally:
        path.write_bytes(original)
    print(
        f"[verify after flipping one byte of {name}] exit {result.returncode}\n{result.stdout}{result.stderr}"
    )
    assert result.returncode == 1
    first, second = result.stdout.splitlines()
    assert first.startswith("OK")
    assert second.startswith("MISMATCH") and name in second
    assert (await verify(net, *SHARED["args"], "--store", SHARED["store"])).returncode == 0  # restored


async def test_chain_outage_delays_anchors_and_never_recording(net: dict[str, Any]) -> None:
    directory = Path(net["dir"])
    factory, device = CAMERAS[1]
    async with Catalog(net["catalog"]) as catalog:
        before = (await catalog.camera_state(factory, device) or {}).get("last_seq", 0)
        await network.stop_process(directory, "chain")
        outage_began = datetime.now(UTC)
        try:
            # A period closes during the outage: recorded in the catalog, not yet on chain.
            async def unsent_while_down() -> bool:
                state = await catalog.camera_state(factory, device) or {}
                if state.get("last_seq", 0) <= before + 10:
                    return False  # a period may close right after the chain stops: also 20 s recorded
                records = await anchors(net, factory, device)
                return any(
                    r["period_start"] >= outage_began - timedelta(seconds=PERIOD_S) and not r.get("chain")
                    for r in records
                )

            await poll_until(
                unsent_while_down,
                timeout=2 * PERIOD_S + 30,
                what="a period closed while the chain is down",
                interval=1,
            )
            during = (await catalog.camera_state(factory, device) or {}).get("last_seq", 0)
            assert during > before + 10, "recording must go on while the chain is down"
            url = net["chain"]["anchor_admin"] + "/healthz"
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                health = await response.json()
            assert health["status"] == "degraded" and health["last_error"], health
            waiting = [r["_id"] for r in await anchors(net, factory, device) if not r.get("chain")]
            assert waiting
        finally:
            await network.start_process(directory, "chain")

        async def all_sent() -> bool:
            records = {r["_id"]: r for r in await anchors(net, factory, device)}
            return all((records[i].get("chain") or {}).get("status") == "anchored" for i in waiting)

        await poll_until(all_sent, timeout=60, what="the delayed anchors to be sent", interval=1)
        print(
            f"[chain outage] {len(waiting)} period(s) closed while anvil was down, "
            f"anchored after it came back: {waiting}"
        )
        # Nothing recorded during the outage is missing: seqs stay contiguous.
        docs = await catalog.segments_by_seq(factory, device, before, during)
        assert [d["seq"] for d in docs] == list(range(before, during + 1))


async def test_anchor_index_copies_events_into_the_catalog(net: dict[str, Any]) -> None:
    # Read before the index runs: what the anchor service sends afterwards may be past the block
    # the index stopped at.
    anchored_before = {camera: anchored(await anchors(net, *camera)) for camera in CAMERAS}
    result = await cli("anchor", "index", "--config", net["chain"]["anchor_config"])
    assert result.returncode == 0, result.stderr
    async with Catalog(net["catalog"]) as catalog:
        for factory, device in CAMERAS:
            records = anchored_before[factory, device]
            day = records[0]["period_start"]
            indexed = await catalog.chain_anchors_between(
                factory, device, day - timedelta(days=1), day + timedelta(days=1)
            )
            by_id = {doc["_id"]: doc for doc in indexed}
            for record in records:
                assert by_id[record["_id"]]["root"] == record["root"]
                assert by_id[record["_id"]]["tx_hash"] == record["chain"]["tx_hash"]


async def admin_session(status: dict[str, Any]) -> aiohttp.ClientSession:
    """A session logged in through nginx as the demo admin (its password from credentials.json)."""
    credentials = json.loads(Path(status["web"]["credentials"]).read_text())
    password = credentials["users"]["demo-admin"]["password"]
    http = aiohttp.ClientSession(base_url=status["web"]["url"], cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.post("/api/login", json={"username": "demo-admin", "password": password}) as r:
        assert r.status == 200, await r.text()
    return http


async def test_export_proof_verifies_the_clip_against_the_chain(net: dict[str, Any], tmp_path: Path) -> None:
    factory, device = CAMERAS[0]
    records = SHARED["records"]
    # A clip across the boundary of the two anchored periods.
    boundary = records[0]["period_end"]
    query = {"start": iso(boundary - timedelta(seconds=20)), "end": iso(boundary + timedelta(seconds=20))}
    clip, proof_file = tmp_path / "clip.mp4", tmp_path / "clip.proof.json"
    async with await admin_session(net) as http:
        async with http.get(f"/export/{factory}/{device}.mp4", params=query) as response:
            assert response.status == 200
            clip.write_bytes(await response.read())
        async with http.get(f"/export/{factory}/{device}.proof.json", params=query) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            proof = await response.json()
            proof_file.write_text(json.dumps(proof))
        async with http.get(
            f"/api/timeline/{factory}/{device}", params={"day": iso(boundary)[:10]}
        ) as response:
            periods = {p["start"][:19]: p for p in (await response.json())["periods"]}
    assert len(proof["periods"]) == 2 and all(p["tx_hash"] for p in proof["periods"].values())
    assert proof["contract"].lower() == net["chain"]["contract"].lower()
    assert proof["chain_id"] == ANVIL_CHAIN_ID, "the proof names the chain its periods were anchored on"
    for record in records:
        mark = periods[f"{record['period_start']:%Y-%m-%dT%H:%M:%S}"]
        assert mark["state"] == "verified", mark
    result = await verify(net, "--proof", str(proof_file), "--clip", str(clip))
    print(f"[verify --proof] exit {result.returncode}\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK") == 4  # the clip, the segments, two periods
    # The same range exported again is the same bytes: the proof holds for any copy of the clip.
    tampered = bytearray(clip.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    clip.write_bytes(bytes(tampered))
    result = await verify(net, "--proof", str(proof_file), "--clip", str(clip))
    print(f"[verify --proof, one byte of the clip flipped] exit {result.returncode}\n{result.stdout}")
    assert result.returncode == 1 and result.stdout.startswith("MISMATCH")
    # A proof whose CID was swapped fails before it reaches the chain.
    proof["segments"][0]["cid"] = proof["segments"][1]["cid"]
    proof_file.write_text(json.dumps(proof))
    result = await verify(net, "--proof", str(proof_file), "--clip", str(clip))
    assert result.returncode == 2 and "is not in period" in result.stderr
