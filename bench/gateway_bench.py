"""Gateway and nginx benchmarks, each side by side with its comparison in one run.

    .venv/bin/python bench/gateway_bench.py http   [--duration 10] [--connections 50] [--rounds 2]
    .venv/bin/python bench/gateway_bench.py replay [--segments 43200] [--repeat 15]

http: a devnet (real Kubo, cluster, catalog, camera, producer, one mirror, two gateways, the
rendered nginx) and, beside it, a second nginx with a minimal static config (same worker count,
same access log line) serving a copy of the same live playlist and the same store files. wrk
(Debian's package; `make bench-deps` installs it) loads each URL with one thread:

  live       GET /live/factory1/cam1.m3u8 through the camswarm nginx, logged in (one session:
             nginx's per-session 1 s cache answers most requests)
  static     GET /live.m3u8, the same bytes as a static file                   target live/static >= 0.8
  uncached   the live URL with a new query string per request, so every request reaches a
             gateway (session lookup, access check, store read, links signed): the gateways' own rate
  signed     a 1 MiB segment through a signed link (/media/...?cid&expires&md5: secure_link, then
             sendfile from the store)
  plain      the same file as a plain static URL                                target signed/plain >= 0.9

Pairs run interleaved (A B B A ...) and each figure is the mean of its rounds.

replay: compose the replay playlist of 24 h of 2 s segments (43,200 catalog documents, links
signed) in process, as the gateway's /replay handler does after its catalog query; target
<= 100 ms. The comparison is the same playlist built the way the gateway did before (links
through links.signed_url, text through m3u8's model).

Each prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import log, percentile, run_chosen
from gateway import links
from gateway.app import compose_replay, load_or_create_secret
from mirror.playlists import PlaylistSegment, _playlist, in_seq_order
from node.devnet import network, probes
from node.devnet.state import free_ports
from node.layout import day_name
from node.procs import poll_until, spawn, stop_group

FACTORY, DEVICE = "factory1", "cam1"
CAMERA = f"{FACTORY}/{DEVICE}"
SEGMENT_BYTES = 1 << 20
BENCH_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


# --- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers and socket errors


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_BYTES = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}


def parse_wrk(text: str) -> WrkResult:
    """The figures of ``wrk --latency`` output; ValueError if it has none."""

    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not found:
            raise ValueError(f"no {label}% latency in wrk output:\n{text}")
        return float(found[1]) * _UNIT[found[2]]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    transfer = re.search(r"^Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not (rate and transfer and total):
        raise ValueError(f"unreadable wrk output:\n{text}")
    errors = 0
    if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        errors += int(bad[1])
    if sockets := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(n) for n in sockets.groups())
    return WrkResult(
        requests_per_s=float(rate[1]),
        mb_per_s=round(float(transfer[1]) * _BYTES[transfer[2]], 1),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total[1]),
        errors=errors,
    )


async def wrk(
    url: str, *, duration: int, connections: int, headers: dict[str, str], script: Path | None
) -> WrkResult:
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: `make bench-deps` (Debian package wrk)")
    argv = [binary, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    process = await asyncio.create_subprocess_exec(
        *argv, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out.decode()}")
    return parse_wrk(out.decode())


# --- the static comparison nginx ---------------------------------------------------------------------


STATIC_CONF = """daemon off;
{user}
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format camswarm '$remote_addr [$time_iso8601] "$request_method $uri $server_protocol" '
                        '$status $body_bytes_sent rt=$request_time "$http_user_agent"';
    access_log {dir}/access.log camswarm;
    client_body_temp_path {dir}/tmp;
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port};
        location = /live.m3u8 {{
            root {dir}/static;
            types {{ application/vnd.apple.mpegurl m3u8; }}
        }}
        location /media/ {{
            alias {media}/;
            sendfile on;
            tcp_nopush on;
            types {{ video/mp2t ts; }}
        }}
    }}
}}
"""


@asynccontextmanager
async def static_nginx(media_root: Path, playlist: str) -> AsyncIterator[tuple[str, Path]]:
    binary = str(network.nginx_binary())
    with tempfile.TemporaryDirectory(prefix="camswarm-static-nginx-") as tmp:
        directory = Path(tmp)
        (directory / "static").mkdir()
        (directory / "tmp").mkdir()
        (directory / "static" / "live.m3u8").write_text(playlist)
        (port,) = free_ports(1, set())
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf = directory / "nginx.conf"
        conf.write_text(STATIC_CONF.format(user=user, dir=directory, port=port, media=media_root))
        pid = spawn(
            [binary, "-c", str(conf), "-p", str(directory), "-e", str(directory / "error.log")],
            log_path=directory / "stderr.log",
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await poll_until(lambda: probes.http_ok(base + "/live.m3u8"), timeout=15, what="the static nginx")
            yield base, directory / "static"
        finally:
            await stop_group(pid, name="static nginx")


# --- http ------------------------------------------------------------------------------------------


async def _login(web: str, credentials: Path) -> str:
    password = network.read_credentials(credentials)["demo-client"]
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(web + "api/login", json={"username": "demo-client", "password": password}) as r:
            if r.status != 200:
                raise RuntimeError(f"login failed: {r.status} {await r.text()}")
        for cookie in jar:
            if cookie.key == "camswarm_session":
                return cookie.value
    raise RuntimeError("login set no camswarm_session cookie")


async def run_http(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camswarm-gateway-bench-") as tmp:
        directory = Path(tmp).resolve()
        try:
            log(f"starting a devnet in {directory}: 1 camera, 1 mirror, 2 gateways, nginx")
            await network.up(directory, mirrors=1, cameras=1, progress=log)
            status = network.status(directory)
            web = status["web"]["url"]
            token = await _login(web, Path(status["web"]["credentials"]))
            cookie = {"Cookie": f"camswarm_session={token}"}
            live_url = f"{web}live/{CAMERA}.m3u8"

            async def current_playlist() -> str:
                async with aiohttp.ClientSession() as http, http.get(live_url, headers=cookie) as r:
                    return await r.text() if r.status == 200 else ""

            async def window_full() -> bool:  # the mirror's live window (6 segments) is full
                return (await current_playlist()).count("#EXTINF") >= 6

            await poll_until(window_full, timeout=180, what="a full live playlist", interval=1)
            playlist = await current_playlist()
            media_root = Path(
                next(iter(status["mirrors"].values()))["store"]
            )  # nginx serves the first mirror's
            day = day_name(datetime.now(UTC))
            segment = media_root / CAMERA / day / "bench-1mib.ts"
            segment.write_bytes(b"\x47" + os.urandom(SEGMENT_BYTES - 1))
            secret = load_or_create_secret(network.link_secret_path(directory))
            path = links.media_path(FACTORY, DEVICE, day, segment.name)
            signed = web.rstrip("/") + links.signed_url(
                path, BENCH_CID, secret=secret, expires=int(time.time()) + 86400
            )
            script = directory / "unique.lua"
            script.write_text(
                "counter = 0\n"
                "request = function()\n"
                "  counter = counter + 1\n"
                f'  return wrk.format("GET", "/live/{CAMERA}.m3u8?n=" .. counter)\n'
                "end\n"
            )
            async with static_nginx(media_root, playlist) as (static, static_root):
                plain = static + path
                runs: dict[str, list[WrkResult]] = {}
                sizes: list[int] = []

                async def run(
                    name: str, url: str, connections: int, headers: dict[str, str], lua: Path | None = None
                ) -> None:
                    if name == "static":  # the same bytes the camswarm nginx serves right now
                        copy = await current_playlist()
                        sizes.append(len(copy.encode()))
                        (static_root / "live.m3u8").write_text(copy)
                    result = await wrk(
                        url, duration=args.duration, connections=connections, headers=headers, script=lua
                    )
                    runs.setdefault(name, []).append(result)
                    log(
                        f"{name:9s} {result.requests_per_s:10.0f} req/s {result.mb_per_s:8.1f} MB/s "
                        f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms errors {result.errors}"
                    )

                for round_ in range(args.rounds):
                    first = round_ % 2 == 0
                    pairs: list[list[tuple[str, str, int, dict[str, str], Path | None]]] = [
                        [
                            ("live", live_url, args.connections, cookie, None),
                            ("static", static + "/live.m3u8", args.connections, {}, None),
                        ],
                        [("signed", signed, 16, {}, None), ("plain", plain, 16, {}, None)],
                    ]
                    for pair in pairs:
                        for name, url, connections, headers, lua in pair if first else pair[::-1]:
                            await run(name, url, connections, headers, lua)
                    await run("uncached", web + f"live/{CAMERA}.m3u8", args.connections, cookie, script)
        finally:
            log("stopping the devnet")
            with suppress(network.DevnetError):
                await network.down(directory)

    def mean(name: str, field: str) -> float:
        return round(statistics.fmean(getattr(r, field) for r in runs[name]), 2)

    summary = {
        name: {
            "requests_per_s": mean(name, "requests_per_s"),
            "mb_per_s": mean(name, "mb_per_s"),
            "p50_ms": mean(name, "p50_ms"),
            "p99_ms": mean(name, "p99_ms"),
            "requests": sum(r.requests for r in runs[name]),
            "errors": sum(r.errors for r in runs[name]),
        }
        for name in runs
    }
    return {
        "bench": "http",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "playlist_bytes": sizes,
        "segment_bytes": SEGMENT_BYTES,
        "runs": summary,
        "live_over_static": round(summary["live"]["requests_per_s"] / summary["static"]["requests_per_s"], 3),
        "signed_over_plain": round(
            summary["signed"]["requests_per_s"] / summary["plain"]["requests_per_s"], 3
        ),
    }


# --- replay ----------------------------------------------------------------------------------------


def catalog_docs(count: int) -> list[dict[str, Any]]:
    """``count`` back-to-back 2 s segments from midnight UTC, as the catalog returns them."""
    t0 = datetime(2026, 11, 21, tzinfo=UTC)
    return [
        {
            "seq": seq,
            "session": "20261121T000000Z",
            "start": t0 + timedelta(seconds=2 * seq),
            "end": t0 + timedelta(seconds=2 * seq + 2),
            "duration": 2.0,
            "filename": f"{(t0 + timedelta(seconds=2 * seq)):%H%M%S}-{seq:010d}.ts",
            "cid": BENCH_CID,
        }
        for seq in range(count)
    ]


def compose_the_old_way(docs: list[dict[str, Any]], secret: str, expires: int) -> str:
    """The replay playlist as built before: signed_url per link, m3u8's model for the text."""
    segments = [
        PlaylistSegment(
            d["seq"],
            d["session"],
            links.signed_url(
                links.media_path("factory1", "cam1", day_name(d["start"]), d["filename"]),
                d["cid"],
                secret=secret,
                expires=expires,
            ),
            d["start"],
            float(d["duration"]),
        )
        for d in docs
    ]
    playlist = _playlist(in_seq_order(segments), media_sequence=0, discontinuity_sequence=0)
    playlist.playlist_type = "vod"
    playlist.is_endlist = True
    text: str = playlist.dumps()
    return text


async def run_replay(args: argparse.Namespace) -> dict[str, Any]:
    docs = catalog_docs(args.segments)
    secret = links.new_secret()
    expires = int(time.time()) + 86400 + 3600

    def timed(compose: Callable[[], str]) -> tuple[list[float], int]:
        took = []
        size = 0
        for _ in range(args.repeat):
            began = time.perf_counter()
            size = len(compose())
            took.append((time.perf_counter() - began) * 1000)
        return took, size

    now, size = timed(lambda: compose_replay("factory1", "cam1", docs, secret=secret, expires=expires))
    log(f"compose_replay: median {statistics.median(now):.0f} ms over {args.repeat}")
    before, size_before = timed(lambda: compose_the_old_way(docs, secret, expires))
    log(f"the old way: median {statistics.median(before):.0f} ms over {args.repeat}")
    return {
        "bench": "replay",
        "segments": args.segments,
        "repeat": args.repeat,
        "playlist_bytes": size,
        "compose_ms": _spread_ms(now),
        "old_way_ms": {**_spread_ms(before), "playlist_bytes": size_before},
        "target_ms": 100,
    }


def _spread_ms(took_ms: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(took_ms), 1),
        "p90": round(percentile(took_ms, 90), 1),
        "min": round(min(took_ms), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    http = sub.add_parser("http", help="playlists and segments through nginx vs static nginx")
    http.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    http.add_argument("--connections", type=int, default=50, help="wrk connections for playlists")
    http.add_argument("--rounds", type=int, default=2, help="interleaved rounds per pair")
    replay = sub.add_parser("replay", help="compose a 24 h replay playlist")
    replay.add_argument("--segments", type=int, default=43_200)
    replay.add_argument("--repeat", type=int, default=15)
    return run_chosen(parser, {"http": run_http, "replay": run_replay})


if __name__ == "__main__":
    raise SystemExit(main())
