"""The rendered nginx.conf under a real nginx: signed links, store files, Kubo fallback, caches.

Gateways and the Kubo gateway are small aiohttp servers started here, so every
request nginx passes upstream is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from gateway import links, nginx_conf
from node.devnet import network
from node.devnet.state import free_ports
from node.procs import poll_until, stop_group, tail
from node.toolchain import ToolMissing
from tests.unit.samples import CID

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DAY_DIR = "factory1/cam1/2026-11-21"
STORED = f"/media/{DAY_DIR}/120000-0000000001.ts"
STORED_TOO = f"/media/{DAY_DIR}/120002-0000000002.ts"
MISSING = f"/media/{DAY_DIR}/120004-0000000003.ts"  # not in the store: comes from Kubo
SEGMENT = bytes(range(256)) * 200 + b"stored segment"
SEGMENT_TOO = b"\x47" + os.urandom(4000)
KUBO_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
KUBO_BYTES = b"\x47from kubo" * 500
OUTSIDE = b"OUTSIDE-THE-STORE-" * 20
EXPORT_HEAD = b"\x00\x00\x00\x20ftypisom" + bytes(1012)
EXPORT_TAIL = b"moov" * 4096
TIMEOUT = aiohttp.ClientTimeout(total=15)


def nginx_binary() -> str:
    """The devnet's nginx lookup; a missing nginx fails the test (make deps installs it)."""
    try:
        return str(network.nginx_binary())
    except ToolMissing as exc:
        pytest.fail(str(exc))


@dataclass
class FakeServer:
    """An aiohttp server on a free loopback port that counts what it is asked."""

    name: str
    hits: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets an export finish
    runner: web.AppRunner | None = None
    address: str = ""

    async def start(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


def playlist_for(session: str) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"## viewer {session}"]
    for seq in range(30):
        lines += ["#EXTINF:2.000,", f"2026-11-21/12{seq:04d}-{seq:010d}.ts"]
    return "\n".join(lines) + "\n"


async def fake_gateway(name: str) -> FakeServer:
    server = FakeServer(name)

    async def live(request: web.Request) -> web.Response:
        server.hits["live"] += 1
        session = request.cookies.get("camswarm_session", "")
        return web.Response(
            text=playlist_for(session),
            content_type="application/vnd.apple.mpegurl",
            # For browsers; nginx still caches it for 1 s.
            headers={"Cache-Control": "no-cache", "X-Gateway": name},
        )

    async def api(request: web.Request) -> web.Response:
        server.hits["api"] += 1
        await request.read()
        return web.json_response({"gateway": name})

    async def export(request: web.Request) -> web.StreamResponse:
        server.hits["export"] += 1
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        await response.prepare(request)
        await response.write(EXPORT_HEAD)
        # The rest exists only once the viewer has the head: a buffering proxy would stall here.
        await asyncio.wait_for(server.release.wait(), timeout=10)
        await response.write(EXPORT_TAIL)
        await response.write_eof()
        return response

    async def other(request: web.Request) -> web.Response:
        server.hits["other"] += 1
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/live/{tail:.*}", live)
    app.router.add_route("*", "/api/{tail:.*}", api)
    app.router.add_get("/export/{tail:.*}", export)
    app.router.add_route("*", "/{tail:.*}", other)
    await server.start(app)
    return server


async def fake_kubo() -> FakeServer:
    server = FakeServer("kubo")

    async def ipfs(request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        server.hits[cid] += 1
        if cid != KUBO_CID or request.query_string:
            return web.Response(status=404, text="no link named ...")
        return web.Response(body=KUBO_BYTES, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/ipfs/{cid}", ipfs)
    await server.start(app)
    return server


@dataclass
class Front:
    base: str
    conf: Path
    state: Path
    media: Path
    secret: str
    gateways: list[FakeServer]
    kubo: FakeServer

    def link(self, path: str, cid: str = CID, *, ttl: int = 300) -> str:
        return self.base + links.signed_url(path, cid, secret=self.secret, expires=int(time.time()) + ttl)

    def gateway_hits(self, kind: str) -> int:
        return sum(g.hits[kind] for g in self.gateways)


def write_store(tmp: Path) -> Path:
    media = tmp / "store"
    day = media / DAY_DIR
    day.mkdir(parents=True)
    (day / "120000-0000000001.ts").write_bytes(SEGMENT)
    (day / "120002-0000000002.ts").write_bytes(SEGMENT_TOO)
    (day / "day.m3u8").write_text("#EXTM3U\n# store day playlist\n")
    (media / "factory1" / "cam1" / "live.m3u8").write_text("#EXTM3U\n# store live playlist\n")
    # Targets of traversal attempts: beside the store and one level inside it.
    (tmp / "x.ts").write_bytes(OUTSIDE)
    (tmp / "passwd").write_bytes(OUTSIDE)
    (media / "factory1" / "x.ts").write_bytes(OUTSIDE)
    return media


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def front(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Front]:
    nginx = nginx_binary()
    tmp = tmp_path_factory.mktemp("nginx-links")
    media = write_store(tmp)
    state = tmp / "state"
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse: nginx first, then its upstreams
        gateways = []
        for name in ("gw1", "gw2"):
            gateways.append(await fake_gateway(name))
            stack.push_async_callback(gateways[-1].stop)
        kubo = await fake_kubo()
        stack.push_async_callback(kubo.stop)
        (port,) = free_ports(1)
        secret = links.new_secret()
        conf = state / "nginx.conf"
        text = nginx_conf.render(
            listen=f"127.0.0.1:{port}",
            state_dir=state,
            media_root=media,
            kubo_gateway=f"http://{kubo.address}",
            gateways=[g.address for g in gateways],
            link_secret=secret,
            # Started as root (a CI container), the workers would otherwise run as "nobody".
            worker_user="root" if os.geteuid() == 0 else None,
        )
        nginx_conf.write_config(conf, text)
        error_log = state / "logs" / "error.log"
        with (state / "logs" / "stderr.log").open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                nginx,
                *("-c", str(conf), "-p", str(state), "-e", str(error_log)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its own process group: workers are stopped with it
            )
        stack.push_async_callback(stop_nginx, proc)
        base = f"http://127.0.0.1:{port}"

        async def answers() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"nginx exited with {proc.returncode}:\n{tail(error_log)}")
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.get(base + "/nginx-health") as r:
                return r.status == 200

        await poll_until(answers, timeout=20, what="nginx to answer")
        yield Front(base, conf, state, media, secret, gateways, kubo)


async def stop_nginx(proc: asyncio.subprocess.Process) -> None:
    """The whole group (master and workers): TERM, a bounded wait, then KILL."""
    await stop_group(proc.pid, name="nginx", term_timeout=10)
    await proc.wait()


async def get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET", data: bytes | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """One request without decompression: headers (all values) and the raw body."""
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False) as http,
        http.request(method, url, headers=sent, data=data) as response,
    ):
        body = await response.read()
        seen: dict[str, list[str]] = {}
        for key, value in response.headers.items():
            seen.setdefault(key.lower(), []).append(value)
        return response.status, seen, body


async def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """A request line sent byte for byte (HTTP clients normalise '..' away before sending)."""
    host, port = urlsplit(base).netloc.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: camswarm\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=15)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line = response.split(b"\r\n", 1)[0].split()
    return int(status_line[1]), response


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


# --- tests ------------------------------------------------------------------------------------


async def test_nginx_t_accepts_the_rendered_config(front: Front) -> None:
    proc = await asyncio.create_subprocess_exec(
        nginx_binary(),
        *("-t", "-c", str(front.conf), "-p", str(front.state), "-e", str(front.state / "logs" / "test.log")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    assert b"test is successful" in output


async def test_valid_link_serves_the_stored_file(front: Front) -> None:
    status, headers, body = await get(front.link(STORED), {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert body == SEGMENT
    assert headers["content-type"] == ["video/mp2t"]
    assert headers["cache-control"] == ["public, max-age=31536000, immutable"]
    assert "content-encoding" not in headers
    assert headers["content-length"] == [str(len(SEGMENT))]
    assert headers["server"] == ["nginx"]  # server_tokens off: no version


async def test_range_request_gets_the_slice(front: Front) -> None:
    status, headers, body = await get(front.link(STORED), {"Range": "bytes=1000-2999"})
    assert status == 206
    assert body == SEGMENT[1000:3000]
    assert headers["content-range"] == [f"bytes 1000-2999/{len(SEGMENT)}"]
    status, _, body = await get(front.link(STORED), {"Range": "bytes=-14"})
    assert (status, body) == (206, b"stored segment")


async def test_head_request(front: Front) -> None:
    status, headers, body = await get(front.link(STORED), method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == [str(len(SEGMENT))]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param("md5", id="tampered-md5"),
        pytest.param("expired", id="expired"),
        pytest.param("cid", id="tampered-cid"),
        pytest.param("expires", id="extended-expiry"),
        pytest.param("path", id="other-file-same-query"),
        pytest.param("secret", id="wrong-secret"),
        pytest.param("no-md5", id="no-md5"),
        pytest.param("no-query", id="no-query"),
    ],
)
async def test_bad_links_are_forbidden(front: Front, tamper: str) -> None:
    url = front.link(STORED)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    if tamper == "md5":
        url = with_query(url, md5=("A" if query["md5"][0] != "A" else "B") + query["md5"][1:])
    elif tamper == "expired":
        url = front.link(STORED, ttl=-5)
    elif tamper == "cid":
        url = with_query(url, cid=KUBO_CID)
    elif tamper == "expires":
        url = with_query(url, expires=str(int(query["expires"]) + 3600))
    elif tamper == "path":
        url = url.replace(STORED, STORED_TOO)
    elif tamper == "secret":
        expires = int(time.time()) + 300
        url = front.base + links.signed_url(STORED, CID, secret=links.new_secret(), expires=expires)
    elif tamper == "no-md5":
        url = url.split("&md5=")[0]
    else:
        url = url.split("?")[0]
    status, _, body = await get(url)
    assert status == 403
    assert SEGMENT[:64] not in body


async def test_other_methods_are_refused(front: Front) -> None:
    before = front.kubo.hits[KUBO_CID]
    status, _, _ = await get(front.link(STORED), method="POST", data=b"x")
    assert status == 403
    status, _, _ = await get(front.link(MISSING, KUBO_CID), method="DELETE")
    assert status == 403
    assert front.kubo.hits[KUBO_CID] == before


async def test_missing_file_comes_from_kubo_then_its_cache(front: Front) -> None:
    before = front.kubo.hits[KUBO_CID]
    for _ in range(2):
        status, headers, body = await get(front.link(MISSING, KUBO_CID), {"Accept-Encoding": "gzip"})
        assert status == 200
        assert body == KUBO_BYTES
        assert headers["content-type"] == ["video/mp2t"]
        assert headers["cache-control"] == ["public, max-age=31536000, immutable"]
        assert "content-encoding" not in headers
    assert front.kubo.hits[KUBO_CID] - before <= 1  # the second one is from nginx's segment cache
    status, _, _ = await get(with_query(front.link(MISSING, KUBO_CID), md5="A" * 22))
    assert status == 403


async def test_missing_file_unknown_to_kubo(front: Front) -> None:
    before = front.kubo.hits[CID]
    status, headers, _ = await get(front.link(MISSING, CID))
    assert status == 404
    assert "cache-control" not in headers  # a miss must not be cached as immutable
    assert front.kubo.hits[CID] - before >= 1


@pytest.mark.parametrize(
    "target",
    [
        "/media/../etc/passwd",
        "/media/../passwd",
        "/media/factory1/cam1/2026-11-21/%2e%2e%2f%2e%2e%2fx.ts",
        "/media/factory1/cam1/2026-11-21/..%2f..%2f..%2f..%2fx.ts",
        "/media/factory1/cam1/2026-11-21/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/x.ts",
        "/media/factory1/cam1/2026-11-21/../../x.ts",
        "/media/%2e%2e/x.ts",
        "/media//factory1/cam1/2026-11-21/..//..//..//x.ts",
        "/media/factory1/cam1/2026-11-21/120000-0000000001.ts%00.txt",
        "/media/factory1/cam1/2026-11-21/120000-0000000001.ts/../../../../x.ts",
    ],
)
async def test_traversal_never_leaves_the_store(front: Front, target: str) -> None:
    # Even a correctly signed query for the literal target does not help.
    expires = int(time.time()) + 300
    query = urlencode({"cid": CID, "expires": expires, "md5": links.sign(target, CID, expires, front.secret)})
    for request in (target, f"{target}?{query}"):
        status, response = await raw_get(front.base, request)
        assert 400 <= status < 500, (request, response[:300])
        assert OUTSIDE[:18] not in response
        assert b"root:" not in response


async def test_store_playlists_are_not_served_as_files(front: Front) -> None:
    for path in ("/media/factory1/cam1/live.m3u8", f"/media/{DAY_DIR}/day.m3u8", f"/media/{DAY_DIR}/"):
        status, _, body = await get(front.base + path)
        assert status == 404, path
        assert b"store" not in body


async def test_live_playlist_is_cached_briefly_per_session(front: Front) -> None:
    # nginx keeps the entry for 1 s on its whole-second clock, so a pair of requests that
    # straddles a second boundary may see it expire; such a pair is tried again on a new URL.
    attempts = []
    for _ in range(3):
        url = front.base + f"/live/factory1/cam1.m3u8?t={time.monotonic_ns()}"
        before, began = front.gateway_hits("live"), time.time()
        seen = []
        for _ in range(2):
            status, headers, body = await get(url, {"Cookie": "camswarm_session=alice"})
            assert status == 200
            assert headers["content-type"][0].split(";")[0] == "application/vnd.apple.mpegurl"
            assert b"## viewer alice" in body
            seen.append(headers["x-cache-status"][0])
        attempts.append((seen, front.gateway_hits("live") - before))
        if int(time.time()) == int(began):  # both requests within one nginx second
            break
    assert attempts[-1] == (["MISS", "HIT"], 1), attempts

    # Another viewer of the same URL never gets alice's playlist.
    status, headers, body = await get(url, {"Cookie": "camswarm_session=bob"})
    assert status == 200
    assert b"## viewer bob" in body
    assert b"alice" not in body
    assert front.gateway_hits("live") - before == 2

    # After the 1 s validity the gateway is asked again.
    async def refreshed() -> bool:
        await get(url, {"Cookie": "camswarm_session=alice"})
        return front.gateway_hits("live") - before == 3

    await poll_until(refreshed, timeout=5, what="the live playlist cache entry to expire", interval=0.2)


async def test_gzip_for_playlists_never_for_segments(front: Front) -> None:
    url = front.base + f"/live/factory1/cam1.m3u8?gz={time.monotonic_ns()}"
    status, headers, body = await get(url, {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == ["gzip"]
    assert gzip.decompress(body).decode() == playlist_for("")
    for link in (front.link(STORED), front.link(MISSING, KUBO_CID)):
        status, headers, _ = await get(link, {"Accept-Encoding": "gzip"})
        assert status == 200
        assert "content-encoding" not in headers


async def test_export_streams_while_produced(front: Front) -> None:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(front.base + "/export/factory1/cam1.mp4", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp4"
        assert "Content-Encoding" not in response.headers
        head = await asyncio.wait_for(response.content.readexactly(len(EXPORT_HEAD)), timeout=5)
        for gateway in front.gateways:
            gateway.release.set()
        tail_bytes = await response.content.read()
    for gateway in front.gateways:
        gateway.release.clear()
    assert head + tail_bytes == EXPORT_HEAD + EXPORT_TAIL


async def test_api_body_limit(front: Front) -> None:
    status, _, _ = await get(front.base + "/api/login", method="POST", data=b"x" * 8_000)
    assert status == 200
    status, _, _ = await get(front.base + "/api/login", method="POST", data=b"x" * 20_000)
    assert status == 413


async def test_requests_survive_a_stopped_gateway(front: Front) -> None:
    # Both gateways take turns while they run.
    first, second = front.gateways
    before = (first.hits["api"], second.hits["api"])
    for _ in range(4):
        status, _, _ = await get(front.base + "/api/ping")
        assert status == 200
    assert first.hits["api"] > before[0]
    assert second.hits["api"] > before[1]

    await second.stop()
    served = first.hits["api"]
    for _ in range(8):
        status, _, body = await get(front.base + "/api/ping")
        assert status == 200, body
        assert b"gw1" in body
    assert first.hits["api"] - served == 8
