"""Producer benchmarks on a private devnet (real Kubo, cluster, catalog, ffmpeg, RTSP).

    .venv/bin/python bench/producer_bench.py latency   [--cameras 2] [--segment 4] [--duration 180]
    .venv/bin/python bench/producer_bench.py capacity  [--cameras 16] [--segment 2] [--duration 300]
    .venv/bin/python bench/producer_bench.py sweep     [--steps 4,8,12,16,24,32,48] [--duration 120]
    .venv/bin/python bench/producer_bench.py partition [--cameras 2] [--partition 120]   (needs --netns)

latency: from ffmpeg listing a segment in its playlist (seen here through
inotify on the producer's session directories) to the signed announcement
arriving at a mirror's Kubo; p50/p99. The comparison run, on the same devnet
afterwards: the same files added to Kubo and published by this script alone,
the floor that Kubo and pubsub set without cluster, MFS or catalog.

capacity: N cameras pulled at 2 Mbit/s by one producer for the duration. All N
pull the same shared RTSP stream, so the machine pays for one encoder and the
producer side pays for N cameras (N ffmpeg remuxers, N outbox pipelines, N
times the bytes into Kubo and the cluster). The outbox backlog is sampled from
/healthz through the run and judged by bench.analysis.carries (no growth over
the last half, at most one segment per camera at the end). Also reports the
producer's CPU as a ratio to its ffmpeg children's, Kubo's and the machine's.

sweep: capacity for each camera count of --steps, each on a fresh devnet (so
every step starts with an empty catalog and outbox), stopping after the first
step that is not carried (unless --keep-going). The most cameras carried is the
largest step with every smaller step carried.

partition: a devnet in network namespaces (node/devnet/netns.py); the producer's
host is cut off from the others (catalog, mirrors) for --partition seconds, then
healed. The backlog is read every --interval seconds from the producer's outbox
database (the admin port is behind the cut link). Reports the peak, the time
from the heal until the backlog first shrinks (announcing again) and until it
is drained, and whether every segment recorded during the cut was
announced; the comparison is the backlog of a producer that announced nothing
(the segments recorded during the cut).

Each run creates and removes its own devnet(s) under a temporary directory and
prints one JSON line with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import closing, suppress
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analysis import carries, drain_seconds, first_drop, most_carried, ms, samples_ms
from bench.common import fetch_health, fetch_metrics, log, percentile, run_chosen
from node.devnet import netns, network
from node.devnet.configs import ProducerCamera, producer_config
from node.errors import DaemonError
from node.kubo import KuboClient
from node.procs import poll_until, spawn, stop_group
from producer.ffmpeg_cmd import PLAYLIST
from producer.outbox import STEPS, read_journal, read_only
from producer.segments import PlaylistError, listed_segments
from producer.watch import PlaylistWatcher

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU accounting -----------------------------------------------------------------------------


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


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


class CpuMeter:
    """CPU used since ``start()`` by the producer, its ffmpeg children (restarted ones too), Kubo
    and the whole machine. Call ``sample()`` now and then: an ffmpeg that exits between two
    samples keeps what it had at the last one."""

    def __init__(self, producer_pid: int, kubo_pid: int) -> None:
        self.producer_pid = producer_pid
        self.kubo_pid = kubo_pid
        self.ffmpeg: dict[int, list[float]] = {}  # pid -> [first seen, last seen]

    def start(self) -> None:
        self.wall0 = time.monotonic()
        self.producer0 = cpu_seconds(self.producer_pid)
        self.kubo0 = cpu_seconds(self.kubo_pid)
        self.machine0 = machine_jiffies()
        self.ffmpeg.clear()
        self.sample()

    def sample(self) -> None:
        for pid in children(self.producer_pid, "ffmpeg"):
            with suppress(OSError):
                used = cpu_seconds(pid)
                self.ffmpeg.setdefault(pid, [used, used])[1] = used

    def percentages(self) -> dict[str, float | None]:
        """Percent of one core over the run (the machine: percent of all its cores)."""
        self.sample()
        wall = time.monotonic() - self.wall0
        busy, total = machine_jiffies()
        producer = cpu_seconds(self.producer_pid) - self.producer0
        ffmpeg = sum(last - first for first, last in self.ffmpeg.values())
        return {
            "producer": round(100 * producer / wall, 1),
            "ffmpeg_all": round(100 * ffmpeg / wall, 1),
            "kubo": round(100 * (cpu_seconds(self.kubo_pid) - self.kubo0) / wall, 1),
            "machine": round(100 * (busy - self.machine0[0]) / max(1, total - self.machine0[1]), 1),
            "producer_over_ffmpeg": round(producer / ffmpeg, 2) if ffmpeg else None,
        }


# --- a devnet with a producer this script configures ----------------------------------------------


class Bench:
    def __init__(self, directory: Path, cameras: int, segment: int, shared: bool) -> None:
        self.dir = directory
        self.cameras = cameras
        self.segment = segment
        self.shared = shared
        self.pid: int | None = None  # the bench producer's (a process group of its own)

    async def __aenter__(self) -> Bench:
        devnet_cameras = 1 if self.shared else self.cameras
        await network.up(self.dir, mirrors=1, cameras=devnet_cameras, producer=False)
        try:
            await self._start_producer()
        except BaseException:  # __aexit__ is not called when __aenter__ fails
            await self.__aexit__()
            raise
        return self

    async def _start_producer(self) -> None:
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
        self.pid = spawn(
            [sys.executable, "-m", "node.cli", "producer", "--config", str(config)],
            log_path=self.dir / "bench-producer.log",
        )
        await poll_until(self.healthy, timeout=60, what="the producer's /healthz")

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.pid is not None:  # SIGTERM, and SIGKILL after 30 s
                await stop_group(self.pid, name="the bench producer", term_timeout=30)
        finally:
            await network.down(self.dir)

    async def healthy(self) -> bool:
        return bool(await self.health())

    async def health(self) -> dict[str, Any]:
        return await fetch_health(self.admin + "/healthz")

    async def metrics(self) -> dict[str, float]:
        return await fetch_metrics(self.admin + "/metrics")


# --- latency ------------------------------------------------------------------------------------


async def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    closed: dict[tuple[str, str, str], float] = {}  # (device, session, ffmpeg's file name) -> listed at
    received: dict[tuple[str, int], float] = {}  # (device, seq) -> announcement received at
    with tempfile.TemporaryDirectory(prefix="camswarm-bench-") as tmp:
        async with Bench(Path(tmp), args.cameras, args.segment, shared=False) as bench:
            watcher = PlaylistWatcher()
            followers: list[asyncio.Task[None]] = []

            async def follow(session_dir: Path, device: str) -> None:
                wake, watch = watcher.watch(session_dir, PLAYLIST)
                try:
                    while True:
                        now = time.time()
                        with suppress(OSError, PlaylistError):
                            text = (session_dir / PLAYLIST).read_text()
                            for seg in listed_segments(text):
                                closed.setdefault((device, session_dir.name, seg.filename), now)
                        with suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), 1.0)
                        wake.clear()
                finally:
                    watcher.unwatch(watch)

            async def discover() -> None:
                followed: set[Path] = set()
                while True:
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
                        received.setdefault((ann["device"], int(ann["seq"])), now)

            tasks = [asyncio.create_task(discover()), asyncio.create_task(listen())]
            try:
                log(f"latency: recording {args.cameras} cameras for {args.duration} s")
                await asyncio.sleep(args.duration)
                metrics = await bench.metrics()
            finally:
                # discover is cancelled with the rest: no follower starts after this list is taken.
                for task in [*tasks, *followers]:
                    task.cancel()
                for task in [*tasks, *followers]:
                    with suppress(asyncio.CancelledError, DaemonError):
                        await task
                watcher.close()
            # The outbox joins the two: the producer moves a run's start times by its clock
            # lead, so an announcement's start is not the PROGRAM-DATE-TIME ffmpeg listed.
            seqs = journaled_seqs(bench.sessions.parent / "outbox.sqlite3")
            samples = [received[seqs[k]] - t for k, t in closed.items() if seqs.get(k) in received]
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
        "p50_ms": ms(percentile(samples, 50)),
        "p99_ms": ms(percentile(samples, 99)),
        "max_ms": ms(max(samples, default=float("nan"))),
        "samples_ms": samples_ms(samples),
        "step_mean_ms": step_means(metrics),
        "kubo_floor": baseline,
    }


def journaled_seqs(outbox: Path) -> dict[tuple[str, str, str], tuple[str, int]]:
    """(device, session, file name) -> (device, seq) for every segment the producer journaled."""
    seqs = {}
    for j in read_journal(outbox):
        device = j.camera.rsplit("/", 1)[1]
        seqs[device, j.session, j.filename] = (device, j.seq)
    return seqs


def step_means(metrics: dict[str, float]) -> dict[str, float | None]:
    """Mean duration of each outbox step in ms, from the producer's histograms."""
    means: dict[str, float | None] = {}
    for step in ("add", "pin", "link", "catalog", "announce"):
        total = metrics.get(f'camswarm_step_seconds_sum{{step="{step}"}}', 0.0)
        count = metrics.get(f'camswarm_step_seconds_count{{step="{step}"}}', 0.0)
        means[step] = round(1000 * total / count, 1) if count else None
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
        "p50_ms": ms(percentile(samples, 50)),
        "p99_ms": ms(percentile(samples, 99)),
        "samples_ms": samples_ms(samples),
    }


async def _has(got: dict[str, float], key: str) -> bool:
    return key in got


# --- capacity: one step, and the sweep ----------------------------------------------------------------


async def measure_step(bench: Bench, args: argparse.Namespace, cameras: int) -> dict[str, Any]:
    """Warm up, then sample the backlog and CPU of ``bench``'s producer for ``args.duration`` s."""
    assert bench.pid is not None
    log(f"capacity: {cameras} cameras, warming up {args.warmup} s")
    await asyncio.sleep(args.warmup)
    meter = CpuMeter(bench.pid, int(bench.status["processes"]["kubo-producer"]["pid"]))
    first = await bench.health()
    meter.start()
    series: list[list[float]] = []  # [seconds into the run, outbox depth, oldest unannounced age]
    log(f"capacity: {cameras} cameras, measuring {args.duration} s")
    while (elapsed := time.monotonic() - meter.wall0) < args.duration:
        report = await bench.health()
        series.append([round(elapsed, 2), report["outbox"]["depth"], report["outbox"]["oldest_age_s"]])
        meter.sample()
        await asyncio.sleep(args.interval)
    last = await bench.health()
    cpu = meter.percentages()
    wall = time.monotonic() - meter.wall0
    metrics = await bench.metrics()
    verdict = carries([(t, depth) for t, depth, _ in series], cameras)
    log(f"capacity: {cameras} cameras: {verdict.reason}; CPU {cpu}")
    restarts = sum(c["restarts"] for c in last["cameras"].values()) - sum(
        c["restarts"] for c in first["cameras"].values()
    )
    announced = sum(v for k, v in metrics.items() if k.startswith("camswarm_segments_announced_total"))
    recorded = sum(v for k, v in metrics.items() if k.startswith("camswarm_segments_recorded_total"))
    return {
        "cameras": cameras,
        "segment_s": args.segment,
        "warmup_s": args.warmup,
        "duration_s": round(wall),
        "sample_interval_s": args.interval,
        "verdict": verdict.as_dict(),
        "outbox_depth_start_end_max": [
            first["outbox"]["depth"],
            last["outbox"]["depth"],
            max((depth for _, depth, _ in series), default=0),
        ],
        "oldest_age_s_max": max((age for _, _, age in series), default=0.0),
        "ffmpeg_restarts_during_run": restarts,
        "segments_recorded": int(recorded),
        "segments_announced": int(announced),
        "cpu_pct": cpu,
        "step_mean_ms": step_means(metrics),
        "series": series,
    }


async def run_capacity(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camswarm-bench-") as tmp:
        async with Bench(Path(tmp), args.cameras, args.segment, shared=True) as bench:
            step = await measure_step(bench, args, args.cameras)
    return {"bench": "capacity", **step}


async def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for cameras in args.steps:
        with tempfile.TemporaryDirectory(prefix="camswarm-bench-") as tmp:
            async with Bench(Path(tmp), cameras, args.segment, shared=True) as bench:
                steps.append(await measure_step(bench, args, cameras))
        if not steps[-1]["verdict"]["carried"] and not args.keep_going:
            log(f"sweep: {cameras} cameras not carried; stopping (--keep-going runs the rest)")
            break
    return {
        "bench": "capacity_sweep",
        "steps_planned": args.steps,
        "segment_s": args.segment,
        "most_carried": most_carried(steps),
        "steps": steps,
    }


# --- partition ----------------------------------------------------------------------------------


def outbox_backlog(path: Path) -> tuple[int, float]:
    """(segments not yet announced, age of the oldest in s) read straight from the outbox database.

    Read-only, beside the producer (SQLite in WAL mode lets a reader in without blocking the
    writer); the same query as ``Outbox.depth``.
    """
    with closing(read_only(path)) as db:
        count, oldest = db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM segments WHERE state != ?", (STEPS[-1],)
        ).fetchone()
    return int(count), (time.time() - float(oldest)) if oldest is not None else 0.0


def recorded_between(path: Path, began: float, ended: float) -> tuple[int, int]:
    """(segments journaled between two epoch times, how many of those are not announced yet)."""
    with closing(read_only(path)) as db:
        total, pending = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(state != ?), 0) FROM segments WHERE created_at BETWEEN ? AND ?",
            (STEPS[-1], began, ended),
        ).fetchone()
    return int(total), int(pending)


async def run_partition(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="camswarm-partition-bench-") as tmp:
        directory = Path(tmp).resolve()
        try:
            log(f"starting a devnet in network namespaces in {directory}: {args.cameras} cameras, 1 mirror")
            await network.up(  # DevnetError says what a machine lacks for netns
                directory,
                mirrors=1,
                cameras=args.cameras,
                segment_seconds=args.segment,
                netns_hosts=True,
                progress=log,
            )
            admin = network.status(directory)["producer"]["admin"]
            outbox = network.producer_state_dir(directory) / "outbox.sqlite3"

            async def announcing() -> bool:
                metrics = await fetch_metrics(admin + "/metrics")
                done = [v for k, v in metrics.items() if k.startswith("camswarm_segments_announced_total")]
                return len(done) >= int(args.cameras) and min(done) >= 1

            await poll_until(announcing, timeout=120, what="an announcement from every camera", interval=1)
            result = await partition_series(directory, outbox, args)
        finally:
            log("stopping the devnet")
            with suppress(network.DevnetError):
                await network.down(directory)
    return result


async def partition_series(directory: Path, outbox: Path, args: argparse.Namespace) -> dict[str, Any]:
    series: list[list[float]] = []  # [seconds, outbox depth, oldest unannounced age]
    began = time.monotonic()
    marks: dict[str, float] = {}  # cut/healed: seconds into the run; *_epoch: wall clock

    async def sample() -> None:
        while True:
            depth, oldest = await asyncio.to_thread(outbox_backlog, outbox)
            series.append([round(time.monotonic() - began, 2), depth, round(oldest, 1)])
            await asyncio.sleep(args.interval)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.sleep(args.before)
        log(f"partition: cutting the producer's host off for {args.partition} s")
        marks["cut_epoch"] = time.time()
        await network.fault(directory, "producer", netns.Fault(down=True))
        marks["cut"] = time.monotonic() - began
        await asyncio.sleep(args.partition)
        await network.fault(directory, "producer", netns.Fault())  # healed
        marks["healed"] = time.monotonic() - began
        marks["healed_epoch"] = time.time()
        log("partition: healed; waiting for the backlog to drain")

        async def drained() -> bool:
            depth, _ = await asyncio.to_thread(outbox_backlog, outbox)
            return depth <= int(args.cameras)

        with suppress(TimeoutError):
            await poll_until(drained, timeout=args.after, what="the backlog to drain", interval=args.interval)
        await asyncio.sleep(args.settle)  # a tail of steady state after the drain, for the plot
    finally:
        sampler.cancel()
        with suppress(asyncio.CancelledError):
            await sampler
    recorded, pending = await asyncio.to_thread(
        recorded_between, outbox, marks["cut_epoch"], marks["healed_epoch"]
    )
    points = [(t, depth) for t, depth, _ in series]
    after_cut = [depth for t, depth in points if t >= marks["cut"]]
    return {
        "bench": "partition",
        "cameras": args.cameras,
        "segment_s": args.segment,
        "partition_s": args.partition,
        "sample_interval_s": args.interval,
        "cut_at_s": round(marks["cut"], 2),
        "healed_at_s": round(marks["healed"], 2),
        "peak_backlog": max(after_cut, default=0),
        "recorded_during_cut": recorded,
        "not_announced_at_end": pending,
        "resumed_s": first_drop(points, marks["healed"]),
        "drain_s": drain_seconds(points, marks["healed"], args.cameras),
        "series": series,
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
    for name, cameras in (("capacity", "16"), ("sweep", None)):
        cap = sub.add_parser(name)
        if cameras is None:
            cap.add_argument(
                "--steps",
                type=_counts,
                default=[4, 8, 12, 16, 24, 32, 48],
                help="camera counts, comma-separated",
            )
            cap.add_argument("--keep-going", action="store_true", help="run every step, carried or not")
        else:
            cap.add_argument("--cameras", type=int, default=int(cameras))
        cap.add_argument("--segment", type=int, default=2)
        cap.add_argument("--duration", type=int, default=300 if cameras else 120)
        cap.add_argument("--warmup", type=int, default=30 if cameras else 20)
        # Not a divisor of the segment length: samples walk through the phases of the
        # cut-and-drain cycle instead of always landing on the same one.
        cap.add_argument("--interval", type=float, default=1.5, help="backlog sampling period, s")
    part = sub.add_parser("partition")
    part.add_argument("--cameras", type=int, default=2)
    part.add_argument("--segment", type=int, default=2)
    part.add_argument("--before", type=int, default=30, help="seconds of steady state before the cut")
    part.add_argument("--partition", type=int, default=120, help="seconds the producer's host is cut off")
    part.add_argument("--after", type=int, default=180, help="at most this long for the drain after the heal")
    part.add_argument("--settle", type=int, default=15, help="seconds kept sampling after the drain")
    part.add_argument("--interval", type=float, default=1.0)
    return run_chosen(
        parser,
        {
            "latency": run_latency,
            "capacity": run_capacity,
            "sweep": run_sweep,
            "partition": run_partition,
        },
    )


def _counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("camera counts: positive integers separated by commas")
    return counts


if __name__ == "__main__":
    sys.exit(main())
