"""Producer benchmarks on a private devnet (real Kubo, cluster, catalog, ffmpeg, RTSP).

    .venv/bin/python bench/producer_bench.py latency  [--cameras 2] [--segment 4] [--duration 180]
    .venv/bin/python bench/producer_bench.py capacity [--cameras 16] [--segment 2] [--duration 300]

latency: from ffmpeg listing a segment in its playlist (seen here through
inotify on the producer's session directories) to the signed announcement
arriving at a mirror's Kubo; p50/p99. The comparison run, on the same devnet
afterwards: the same files added to Kubo and published by this script alone,
the floor that Kubo and pubsub set without cluster, MFS or catalog.

capacity: N cameras pulled at 2 Mbit/s by one producer for the duration. All N
pull the same shared RTSP stream, so the machine pays for one encoder and the
producer side pays for N cameras (N ffmpeg remuxers, N outbox pipelines, N
times the bytes into Kubo and the cluster). Passes when the outbox backlog does
not grow. Also reports the producer's CPU per camera as a ratio to ffmpeg's.

Each run creates and removes its own devnet under a temporary directory and
prints one JSON line with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fetch_metrics, percentile, run_chosen
from node.announce import format_start
from node.devnet import network
from node.devnet.configs import ProducerCamera, producer_config
from node.errors import DaemonError
from node.kubo import KuboClient
from node.procs import poll_until
from producer.ffmpeg_cmd import PLAYLIST
from producer.segments import PlaylistError, listed_segments
from producer.watch import PlaylistWatcher

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int, name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = (entry / "stat").read_text()
            comm = stat[stat.find("(") + 1 : stat.rfind(")")]
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            if ppid == pid and comm == name:
                found.append(int(entry.name))
    return found


class Bench:
    def __init__(self, directory: Path, cameras: int, segment: int, shared: bool) -> None:
        self.dir = directory
        self.cameras = cameras
        self.segment = segment
        self.shared = shared
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Bench:
        devnet_cameras = 1 if self.shared else self.cameras
        await network.up(self.dir, mirrors=1, cameras=devnet_cameras, producer=False)
        self.status = network.status(self.dir)
        state_dir = self.dir / "bench-producer"
        rtsp = [c["rtsp"] for c in self.status["cameras"]]
        cams = [
            ProducerCamera(f"factory{k % 2 + 1}", f"cam{k + 1}", rtsp[0] if self.shared else rtsp[k])
            for k in range(self.cameras)
        ]
        admin_port = int(self.status["producer"]["admin"].rsplit(":", 1)[1])
        text = producer_config(
            kubo_api=self.status["nodes"]["producer"]["kubo_api"],
            cluster_api=self.status["nodes"]["producer"]["cluster_api"],
            catalog=self.status["catalog"],
            topic=self.status["topic"],
            state_dir=str(state_dir),
            admin_port=admin_port,
            cameras=cams,
            segment_seconds=self.segment,
            replication=(2, 2),
        )
        config = self.dir / "bench-producer.toml"
        config.write_text(text)
        self.sessions = state_dir / "sessions"
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.log = (self.dir / "bench-producer.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", "producer", "--config", str(config),
            stdout=self.log, stderr=self.log, start_new_session=True,
        )  # fmt: skip
        await poll_until(self.healthy, timeout=60, what="the producer's /healthz")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.log.close()
        await network.down(self.dir)

    async def healthy(self) -> bool:
        return bool(await self.health())

    async def health(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(self.admin + "/healthz") as r:
            result: dict[str, Any] = await r.json() if r.status == 200 else {}
            return result

    async def metrics(self) -> dict[str, float]:
        return await fetch_metrics(self.admin + "/metrics")


async def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    closed: dict[tuple[str, str], float] = {}
    received: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="camswarm-bench-") as tmp:
        async with Bench(Path(tmp), args.cameras, args.segment, shared=False) as bench:
            watcher = PlaylistWatcher()
            stop = asyncio.Event()

            async def follow(session_dir: Path, device: str) -> None:
                wake, watch = watcher.watch(session_dir, PLAYLIST)
                try:
                    while not stop.is_set():
                        now = time.time()
                        with suppress(OSError, PlaylistError):
                            text = (session_dir / PLAYLIST).read_text()
                            for seg in listed_segments(text):
                                closed.setdefault((device, format_start(seg.start)), now)
                        with suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), 1.0)
                        wake.clear()
                finally:
                    watcher.unwatch(watch)

            async def discover() -> None:
                followed: set[Path] = set()
                followers = []
                while not stop.is_set():
                    for playlist_dir in bench.sessions.glob("*/*/*"):
                        if playlist_dir.is_dir() and playlist_dir not in followed:
                            followed.add(playlist_dir)
                            followers.append(
                                asyncio.create_task(follow(playlist_dir, playlist_dir.parent.name))
                            )
                    await asyncio.sleep(0.05)

            async def listen() -> None:
                async with KuboClient(bench.status["nodes"]["mirror1"]["kubo_api"]) as kubo:
                    async for message in kubo.pubsub_sub(bench.status["topic"]):
                        now = time.time()
                        ann = json.loads(message.data)
                        received.setdefault((ann["device"], ann["start"]), now)

            tasks = [asyncio.create_task(discover()), asyncio.create_task(listen())]
            print(f"latency: recording {args.cameras} cameras for {args.duration} s", file=sys.stderr)
            await asyncio.sleep(args.duration)
            metrics = await bench.metrics()
            stop.set()
            for task in tasks:
                task.cancel()
            watcher.close()
            samples = [received[k] - closed[k] for k in received if k in closed]
            files = sorted(bench.sessions.glob("*/*/*/seg-*.ts"))
            sizes = [f.stat().st_size for f in files] if files else [0]
            baseline = await kubo_floor(bench, files[-args.baseline_samples :])
    return {
        "bench": "latency",
        "cameras": args.cameras,
        "segment_s": args.segment,
        "duration_s": args.duration,
        "segment_mb_mean": round(statistics.mean(sizes) / 1e6, 2),
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 50) * 1000),
        "p99_ms": round(percentile(samples, 99) * 1000),
        "max_ms": round(max(samples, default=float("nan")) * 1000),
        "step_mean_ms": step_means(metrics),
        "kubo_floor": baseline,
    }


def step_means(metrics: dict[str, float]) -> dict[str, float]:
    """Mean duration of each outbox step in ms, from the producer's histograms."""
    means = {}
    for step in ("add", "pin", "link", "catalog", "announce"):
        total = metrics.get(f'camswarm_step_seconds_sum{{step="{step}"}}', 0.0)
        count = metrics.get(f'camswarm_step_seconds_count{{step="{step}"}}', 0.0)
        means[step] = round(1000 * total / count, 1) if count else float("nan")
    return means


async def kubo_floor(bench: Bench, files: list[Path]) -> dict[str, Any]:
    """Comparison: the same files through ``ipfs add`` + ``pubsub pub`` alone, received by the mirror."""
    topic = "camswarm-bench/floor"
    got: dict[str, float] = {}
    sent: dict[str, float] = {}
    async with (
        KuboClient(bench.status["nodes"]["producer"]["kubo_api"]) as producer,
        KuboClient(bench.status["nodes"]["mirror1"]["kubo_api"]) as mirror,
    ):

        async def listen() -> None:
            async for message in mirror.pubsub_sub(topic):
                got.setdefault(message.data.decode(), time.time())

        task = asyncio.create_task(listen())
        mirror_id = bench.status["nodes"]["mirror1"]["peer_id"]

        async def subscribed() -> bool:
            return mirror_id in await producer.pubsub_peers(topic)

        await poll_until(subscribed, timeout=30, what="the mirror's bench subscription")
        for path in files:
            began = time.time()
            result = await producer.add(path, filename=path.name, pin=True)
            sent[result.cid] = began
            await producer.pubsub_pub(topic, result.cid.encode())
            await poll_until(partial(_has, got, result.cid), timeout=10, what="the floor message")
        task.cancel()
        with suppress(asyncio.CancelledError, DaemonError):
            await task
    samples = [got[c] - sent[c] for c in sent if c in got]
    return {
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 50) * 1000),
        "p99_ms": round(percentile(samples, 99) * 1000),
    }


async def _has(got: dict[str, float], key: str) -> bool:
    return key in got


async def run_capacity(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camswarm-bench-") as tmp:
        async with Bench(Path(tmp), args.cameras, args.segment, shared=True) as bench:
            assert bench.proc is not None
            print(f"capacity: {args.cameras} cameras, warming up {args.warmup} s", file=sys.stderr)
            await asyncio.sleep(args.warmup)
            kubo_pid = int(bench.status["processes"]["kubo-producer"]["pid"])
            ffmpegs = children(bench.proc.pid, "ffmpeg")
            first = await bench.health()
            cpu0 = cpu_seconds(bench.proc.pid), sum(cpu_seconds(p) for p in ffmpegs), cpu_seconds(kubo_pid)
            wall0 = time.monotonic()
            depths: list[int] = []
            ages: list[float] = []
            deadline = wall0 + args.duration
            while time.monotonic() < deadline:
                report = await bench.health()
                depths.append(report["outbox"]["depth"])
                ages.append(report["outbox"]["oldest_age_s"])
                await asyncio.sleep(5)
            last = await bench.health()
            wall = time.monotonic() - wall0
            alive = [p for p in ffmpegs if Path(f"/proc/{p}").exists()]
            cpu1 = cpu_seconds(bench.proc.pid), sum(cpu_seconds(p) for p in alive), cpu_seconds(kubo_pid)
            restarts = sum(c["restarts"] for c in last["cameras"].values())
            metrics = await bench.metrics()
    producer_cpu = cpu1[0] - cpu0[0]
    ffmpeg_cpu = cpu1[1] - cpu0[1]
    announced = sum(v for k, v in metrics.items() if k.startswith("camswarm_segments_announced_total"))
    recorded = sum(v for k, v in metrics.items() if k.startswith("camswarm_segments_recorded_total"))
    # No backlog growth: the outbox at the end is no deeper than a couple of segments per camera.
    steady = last["outbox"]["depth"] <= max(2 * args.cameras, first["outbox"]["depth"]) and max(ages) < 30
    return {
        "bench": "capacity",
        "cameras": args.cameras,
        "segment_s": args.segment,
        "duration_s": round(wall),
        "steady": steady,
        "outbox_depth_start_end_max": [first["outbox"]["depth"], last["outbox"]["depth"], max(depths)],
        "oldest_age_s_max": max(ages),
        "ffmpeg_restarts_during_run": restarts - sum(c["restarts"] for c in first["cameras"].values()),
        "segments_recorded": int(recorded),
        "segments_announced": int(announced),
        "cpu_pct_producer": round(100 * producer_cpu / wall, 1),
        "cpu_pct_ffmpeg_all": round(100 * ffmpeg_cpu / wall, 1),
        "cpu_pct_kubo": round(100 * (cpu1[2] - cpu0[2]) / wall, 1),
        "producer_to_ffmpeg_cpu_ratio": round(producer_cpu / ffmpeg_cpu, 2) if ffmpeg_cpu else None,
        "step_mean_ms": step_means(metrics),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--cameras", type=int, default=2)
    lat.add_argument("--segment", type=int, default=4, help="segment seconds (4 s at 2 Mbit/s is about 1 MB)")
    lat.add_argument("--duration", type=int, default=180)
    lat.add_argument("--baseline-samples", type=int, default=40)
    cap = sub.add_parser("capacity")
    cap.add_argument("--cameras", type=int, default=16)
    cap.add_argument("--segment", type=int, default=2)
    cap.add_argument("--duration", type=int, default=300)
    cap.add_argument("--warmup", type=int, default=30)
    return run_chosen(parser, {"latency": run_latency, "capacity": run_capacity})


if __name__ == "__main__":
    sys.exit(main())
