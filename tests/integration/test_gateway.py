"""The gateway in process against the session devnet's catalog and mirror1's store.

Access matrix (anonymous / client of factory1 / client of factory2 / admin) on
every endpoint built so far, playlists with links nginx can verify, a replay
range that lists exactly the catalog's overlapping segments, hostile input.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import m3u8
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from gateway import links
from gateway.app import CSRF_HEADER, GATEWAY_KEY, Gateway
from gateway.config import GatewayConfig, GatewayNode
from gateway.users import UserStore
from node.catalog import Catalog
from node.procs import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PASSWORD = "correct horse battery"
CAMERA = ("factory1", "cam1")
USERS = {
    "admin": ("admin", (), ()),
    "own": ("client", ("factory1",), ()),
    "other": ("client", ("factory2",), ()),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    devnet: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestServer]:
    state = tmp_path_factory.mktemp("gateway")
    store = UserStore(state / "users.json")
    for name, (role, factories, cameras) in USERS.items():
        store.add(name, PASSWORD, role, factories, cameras)
    node = GatewayNode(
        store_dir=Path(devnet["mirrors"]["mirror1"]["store"]),
        catalog=devnet["catalog"],
        users_file=state / "users.json",
        secret_file=state / "link.secret",
        login_attempts=3,
        login_window_s=60,
        export_max_s=600,
        # The devnet encrypts cam1: like the devnet's gateways, this one holds the master key.
        master_key_file=str(Path(devnet["dir"]) / "master.key"),
    )
    gw = Gateway(GatewayConfig(node=node))
    server = TestServer(gw.app())
    await server.start_server()

    async def mirrored() -> bool:
        async with Catalog(devnet["catalog"]) as catalog:
            docs = await catalog.segments_by_seq(*CAMERA, 0, 1 << 40)
        live = Path(devnet["mirrors"]["mirror1"]["store"]) / CAMERA[0] / CAMERA[1] / "live.m3u8"
        return len(docs) >= 8 and live.exists()

    try:
        await poll_until(mirrored, timeout=120, what="8 segments recorded and mirrored", interval=0.5)
        yield server
    finally:
        await server.close()
        await gw.close()


async def login(
    server: TestServer, username: str, password: str = PASSWORD
) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(
        base_url=str(server.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    async with session.post("/api/login", json={"username": username, "password": password}) as response:
        assert response.status == 200, await response.text()
        csrf = (await response.json())["csrf"]
        assert "httponly" in response.headers["Set-Cookie"].lower()
        assert "samesite=strict" in response.headers["Set-Cookie"].lower()
    return session, str(csrf)


async def status_of(session: aiohttp.ClientSession, path: str) -> int:
    async with session.get(path) as response:
        body = await response.text()
        if response.status >= 400:
            assert response.content_type == "application/json", body
            assert "Traceback" not in body
            assert "error" in json.loads(body)
        return response.status


async def test_access_matrix(gateway: TestServer) -> None:
    f, d = CAMERA
    own = [
        f"/api/timeline/{f}/{d}",
        f"/live/{f}/{d}.m3u8",
        f"/live/{f}/{d}/day.m3u8",
        f"/replay/{f}/{d}.m3u8?start=2026-01-01T00:00:00Z&end=2026-01-01T00:01:00Z",
        f"/export/{f}/{d}.mp4?start=2026-01-01T00:00:00Z&end=2026-01-01T00:01:00Z",
    ]
    anonymous = aiohttp.ClientSession(base_url=str(gateway.make_url("")))
    sessions = {name: (await login(gateway, name))[0] for name in USERS}
    matrix: dict[str, dict[str, int]] = {}

    async def check(who: str, session: aiohttp.ClientSession, path: str, expected: int, row: str) -> None:
        status = await status_of(session, path)
        matrix.setdefault(row, {})[who] = status
        assert status == expected, (who, path, status)

    try:
        for path in [*own, "/api/me", "/api/cameras"]:
            await check("anonymous", anonymous, path, 401, path)
        for path in own:
            expected_own = 404 if "start=" in path else 200  # nothing recorded in 2026-01
            await check("admin", sessions["admin"], path, expected_own, path)
            await check("client, own factory", sessions["own"], path, expected_own, path)
            await check("client, other factory", sessions["other"], path, 403, path)
            unknown = path.replace(f"/{f}/{d}", "/factory1/nosuchcam")
            await check("admin, unknown camera", sessions["admin"], unknown, 404, path)
        for name, visible in (("admin", True), ("own", True), ("other", False)):
            async with sessions[name].get("/api/cameras") as response:
                cameras = (await response.json())["cameras"]
            assert (
                {"factory": f, "device": d} in [{k: c[k] for k in ("factory", "device")} for c in cameras]
            ) is visible
        columns = [
            "anonymous",
            "admin",
            "client, own factory",
            "client, other factory",
            "admin, unknown camera",
        ]
        lines = ["| endpoint | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for row, seen in matrix.items():
            lines.append(
                f"| `{row.split('?')[0]}` | " + " | ".join(str(seen.get(c, "")) for c in columns) + " |"
            )
        print("\n[access matrix] (replay/export ask for a range with nothing recorded: 404 when allowed)")
        print("\n".join(lines))
    finally:
        await anonymous.close()
        for session in sessions.values():
            await session.close()


async def test_live_and_day_playlists_carry_links_nginx_can_verify(gateway: TestServer) -> None:
    session, _ = await login(gateway, "own")
    gw = gateway.app[GATEWAY_KEY]
    try:
        for path in (f"/live/{CAMERA[0]}/{CAMERA[1]}.m3u8", f"/live/{CAMERA[0]}/{CAMERA[1]}/day.m3u8"):
            async with session.get(path) as response:
                assert response.status == 200
                assert response.content_type == "application/vnd.apple.mpegurl"
                playlist = m3u8.loads(await response.text())
            assert playlist.segments
            for segment in playlist.segments:
                url = urlsplit(segment.uri)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                assert links.verify(
                    url.path, query["cid"], int(query["expires"]), query["md5"], gw.secret, time.time()
                )
                assert (gw.store / url.path.removeprefix("/media/")).is_file()
    finally:
        await session.close()


async def test_replay_and_export_cover_exactly_the_overlapping_segments(
    gateway: TestServer, devnet: dict[str, Any], tmp_path: Path
) -> None:
    async with Catalog(devnet["catalog"]) as catalog:
        docs = await catalog.segments_by_seq(*CAMERA, 0, 1 << 40)
    start = docs[2]["start"] + timedelta(seconds=0.5)
    end = docs[5]["start"] + timedelta(seconds=0.5)
    expected = [d["filename"] for d in docs if d["start"] < end and d["end"] > start]
    session, _ = await login(gateway, "admin")
    try:
        query = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat()}
        async with session.get(f"/replay/{CAMERA[0]}/{CAMERA[1]}.m3u8", params=query) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        playlist = m3u8.loads(text)
        assert [urlsplit(s.uri).path.rsplit("/", 1)[1] for s in playlist.segments] == expected
        assert playlist.is_endlist
        assert playlist.playlist_type == "vod"

        async with session.get(f"/export/{CAMERA[0]}/{CAMERA[1]}.mp4", params=query) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "video/mp4"
            assert int(response.headers["X-Camswarm-Segments"]) == len(expected)
            clip = await response.read()
    finally:
        await session.close()
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
        "-of", "json", str(path), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(probe.communicate(), 60)
    info = json.loads(out)
    chosen = [d for d in docs if d["filename"] in expected]
    total = sum(d["duration"] for d in chosen)
    assert abs(float(info["format"]["duration"]) - total) <= max(d["duration"] for d in chosen)
    assert info["streams"][0]["codec_name"] == "h264"


BAD_NAME = (400, 404)  # refused by routing or by the name check, never served
BAD_VALUE = (400,)  # the camera is fine: the parameter itself is refused, before any lookup


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/live/factory1/..%2f..%2fetc.m3u8", BAD_NAME),
        ("/live/%2e%2e/cam1.m3u8", BAD_NAME),
        ("/live/factory1/cam1%00.m3u8", BAD_NAME),
        ("/live/" + "f" * 300 + "/cam1.m3u8", BAD_NAME),
        ("/live/factory1/cam1/day.m3u8?day=../../etc", BAD_VALUE),
        ("/live/factory1/cam1/day.m3u8?day=2026-02-30", BAD_VALUE),
        ("/live/factory1/cam1/day.m3u8?day=%00", BAD_VALUE),
        ("/api/timeline/factory1/cam1?day=" + "9" * 500, BAD_VALUE),
        ("/replay/factory1/cam1.m3u8?start=yesterday&end=now", BAD_VALUE),
        ("/replay/factory1/cam1.m3u8?start=2026-11-21T10:00:00Z&end=2026-11-21T09:00:00Z", BAD_VALUE),
        ("/replay/factory1/cam1.m3u8?start=2026-11-21T10:00:00&end=2026-11-21T10:01:00", BAD_VALUE),
        ("/replay/factory1/cam1.m3u8?start=2026-11-21T00:00:00Z&end=2026-11-22T00:00:00Z", BAD_VALUE),
    ],
)
async def test_hostile_input_gets_a_4xx_and_no_traceback(
    gateway: TestServer, path: str, expected: tuple[int, ...]
) -> None:
    session, _ = await login(gateway, "admin")
    try:
        async with session.get(path) as response:
            body = await response.text()
            assert 400 <= response.status < 500, (path, response.status, body)
            assert response.status in expected, (path, response.status, body)
            assert "Traceback" not in body and "root:" not in body
    finally:
        await session.close()


async def test_state_changes_need_the_csrf_token_and_login_is_rate_limited(gateway: TestServer) -> None:
    session, csrf = await login(gateway, "own")
    try:
        async with session.post("/api/logout") as response:
            assert response.status == 403  # no CSRF token
        async with session.post("/api/logout", headers={CSRF_HEADER: "forged"}) as response:
            assert response.status == 403
        async with session.post("/api/logout", headers={CSRF_HEADER: csrf}) as response:
            assert response.status == 200
        async with session.get("/api/me") as response:
            assert response.status == 401
    finally:
        await session.close()
    async with aiohttp.ClientSession(base_url=str(gateway.make_url(""))) as anonymous:
        async with anonymous.post("/api/login", data="username=own&password=x") as r:
            assert r.status == 400
        async with anonymous.post(
            "/api/login", data=b"{" * 10_000, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status in (400, 413)
        for _ in range(3):
            async with anonymous.post(
                "/api/login", json={"username": "other", "password": "wrong!wrong"}
            ) as r:
                assert r.status == 401
        async with anonymous.post("/api/login", json={"username": "other", "password": PASSWORD}) as r:
            assert r.status == 429  # even the right password, until the window passes


async def test_web_ui_is_served_with_its_assets(gateway: TestServer) -> None:
    async with aiohttp.ClientSession(base_url=str(gateway.make_url(""))) as anonymous:
        async with anonymous.get("/") as response:
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            page = await response.text()
        assert '<script src="/static/hls.min.js">' in page
        for name in ("app.js", "style.css", "hls.min.js"):
            async with anonymous.get(f"/static/{name}") as response:
                assert response.status == 200, name
                assert len(await response.read()) > 100
        for name in ("..%2fapp.py", "package.json", "node_modules"):
            async with anonymous.get(f"/static/{name}") as response:
                assert response.status == 404, name
