"""The devnet's web front: demo users log in through nginx, watch live, and survive a gateway outage."""

from __future__ import annotations

import json
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
    async with client.get("/api/cameras") as r:
        assert r.status == 200
        cameras = (await r.json())["cameras"]
    assert [(c["factory"], c["device"]) for c in cameras] == [("factory1", "cam1")]

    segments: list[str] = []

    async def playlist_has_a_segment() -> bool:
        async with client.get("/live/factory1/cam1.m3u8") as r:
            if r.status != 200:
                return False  # 404 until the mirror has stored a segment
            text = await r.text()
        segments[:] = [line for line in text.splitlines() if line and not line.startswith("#")]
        return bool(segments)

    await poll_until(playlist_has_a_segment, timeout=90, what="a live playlist with a segment", interval=0.5)
    assert segments[-1].startswith("/media/factory1/cam1/")
    # The signed link alone is the credential: nginx checks it and serves the file itself.
    async with aiohttp.ClientSession(base_url=devnet["web"]["url"], timeout=TIMEOUT) as anonymous:
        async with anonymous.get(segments[-1]) as r:
            body = await r.read()
            assert r.status == 200
            assert r.headers["Content-Type"] == "video/mp2t"
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
