"""The devnet's web front: demo users log in through nginx, watch live, and survive a gateway outage."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from node.devnet import network
from node.procs import poll_until

TIMEOUT = aiohttp.ClientTimeout(total=15)


@pytest_asyncio.fixture(loop_scope="session")
async def client(devnet: dict[str, Any]) -> AsyncIterator[aiohttp.ClientSession]:
    """A session logged in through nginx as the demo client (its password from credentials.json)."""
    credentials = json.loads(Path(devnet["web"]["credentials"]).read_text())
    password = credentials["users"]["demo-client"]["password"]
    # unsafe: the cookie comes from an IP address (127.0.0.1), which aiohttp's jar refuses by default.
    async with aiohttp.ClientSession(
        base_url=devnet["web"]["url"], timeout=TIMEOUT, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        async with http.post("/api/login", json={"username": "demo-client", "password": password}) as r:
            assert r.status == 200, await r.text()
            me = await r.json()
        assert me["username"] == "demo-client" and me["role"] == "client"
        yield http


async def test_demo_client_watches_factory1_live_through_nginx(
    devnet: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    cameras: list[dict[str, Any]] = []

    async def listed() -> bool:  # a camera is listed once it has recorded a segment
        async with client.get("/api/cameras") as r:
            assert r.status == 200
            cameras[:] = (await r.json())["cameras"]
        return bool(cameras)

    await poll_until(listed, timeout=90, what="the demo client's camera list", interval=0.5)
    assert [(c["factory"], c["device"]) for c in cameras] == [("factory1", "cam1")]

    segments: list[str] = []
    playlist: list[str] = []

    async def playlist_has_a_segment() -> bool:
        async with client.get("/live/factory1/cam1.m3u8") as r:
            if r.status != 200:
                return False  # 404 until the mirror has stored a segment
            text = await r.text()
        playlist[:] = text.splitlines()
        segments[:] = [line for line in playlist if line and not line.startswith("#")]
        return bool(segments)

    await poll_until(playlist_has_a_segment, timeout=90, what="a live playlist with a segment", interval=0.5)
    assert segments[-1].startswith("/media/factory1/cam1/")
    encrypted = any(
        line.startswith("#EXT-X-KEY:METHOD=AES-128") for line in playlist
    )  # the devnet encrypts cam1 (test_encryption.py)
    # The signed link alone is the credential: nginx checks it and serves the file itself.
    async with aiohttp.ClientSession(base_url=devnet["web"]["url"], timeout=TIMEOUT) as anonymous:
        async with anonymous.get(segments[-1]) as r:
            body = await r.read()
            assert r.status == 200
            assert r.headers["Content-Type"] == "video/mp2t"
        if encrypted:  # nginx serves the stored ciphertext as is: whole AES blocks
            assert body and len(body) % 16 == 0
        else:
            assert body and body[0] == 0x47  # an MPEG-TS sync byte
        async with anonymous.get(segments[-1].replace("md5=", "md5=x")) as r:
            assert r.status == 403


async def test_nginx_retries_the_other_gateway_when_one_is_down(
    devnet: dict[str, Any], client: aiohttp.ClientSession
) -> None:
    directory = Path(devnet["dir"])
    assert await network.stop_process(directory, "gateway1") == "stopped"
    try:
        for _ in range(10):
            async with client.get("/api/me") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["username"] == "demo-client"
    finally:
        await network.start_process(directory, "gateway1")
    assert network.status(directory)["processes"]["gateway1"]["alive"] is True


LOAD_CLIENTS = 200
LOAD_SECONDS = 30.0
LOAD_POLL_S = 1.0  # hls.js reloads a live playlist about once per target duration (2 s); twice as often here


async def _login(base_url: str, password: str, logins: asyncio.Semaphore) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(
        base_url=base_url, timeout=TIMEOUT, cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    async with logins, http.post("/api/login", json={"username": "demo-client", "password": password}) as r:
        assert r.status == 200, await r.text()
    return http


async def _poll_live(
    http: aiohttp.ClientSession, offset: float, until: float, outcome: Counter[str], took: list[float]
) -> None:
    await asyncio.sleep(offset)  # spread the clients over one polling period, as real players are
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            async with http.get("/live/factory1/cam1.m3u8") as r:
                text = await r.text()
                ok = r.status == 200 and text.startswith("#EXTM3U") and "/media/factory1/cam1/" in text
                outcome["ok" if ok else f"status {r.status}"] += 1
                if not ok and outcome[f"status {r.status}"] == 1:
                    print(f"\n[load] first bad answer: {r.status} {text[:600]!r}")
        except (aiohttp.ClientError, TimeoutError) as error:
            outcome[type(error).__name__] += 1
        took.append(time.monotonic() - began)
        await asyncio.sleep(max(0.0, LOAD_POLL_S - (time.monotonic() - began)))


async def test_200_clients_poll_live_playlists_through_nginx_without_errors(devnet: dict[str, Any]) -> None:
    """200 logged-in clients poll for 30 s: 200 sessions, so nginx's per-session cache cannot absorb them."""
    credentials = json.loads(Path(devnet["web"]["credentials"]).read_text())
    password = credentials["users"]["demo-client"]["password"]
    logins = asyncio.Semaphore(8)
    clients = await asyncio.gather(
        *(_login(devnet["web"]["url"], password, logins) for _ in range(LOAD_CLIENTS))
    )
    try:
        # A live playlist exists before the load starts (a fresh devnet needs a first segment).
        async def live_ready() -> bool:
            async with clients[0].get("/live/factory1/cam1.m3u8") as r:
                return r.status == 200

        await poll_until(live_ready, timeout=90, what="a live playlist", interval=0.5)
        outcome: Counter[str] = Counter()
        took: list[float] = []
        until = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(
            *(
                _poll_live(http, LOAD_POLL_S * i / LOAD_CLIENTS, until, outcome, took)
                for i, http in enumerate(clients)
            )
        )
    finally:
        await asyncio.gather(*(http.close() for http in clients))
    took.sort()
    total = sum(outcome.values())
    print(
        f"\n[load] {LOAD_CLIENTS} clients x {LOAD_SECONDS:.0f} s through nginx: {total} playlist requests, "
        f"{dict(outcome)}, {total / LOAD_SECONDS:.0f}/s, p50 {took[len(took) // 2] * 1000:.1f} ms, "
        f"p99 {took[int(len(took) * 0.99)] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms"
    )
    assert outcome["ok"] == total, outcome
    assert total >= LOAD_CLIENTS * LOAD_SECONDS / LOAD_POLL_S * 0.8  # the clients really polled
