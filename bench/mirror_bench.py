"""Mirror benchmarks on a private devnet (real Kubo, cluster, catalog, ffmpeg, RTSP, mirrors).

    .venv/bin/python bench/mirror_bench.py lag     [--cameras 2] [--segment 4] [--duration 180]
    .venv/bin/python bench/mirror_bench.py catchup [--cameras 2] [--segment 2] [--offline 600] [--whole-node]

Both run a devnet of one producer node and two mirror nodes, its producer
cutting segments of ``--segment`` seconds (``network.up(segment_seconds=...)``).

lag: announcement -> playable at mirror1 (target p50 <= 500 ms, p99 <= 2 s for
~1 MB segments; the devnet cameras stream ~2.2 Mbit/s, so 4-second segments
are ~1 MB). t0 is the arrival of the announcement at a subscription this script
opens on mirror1's own Kubo (the same Kubo and pubsub stream the mirror reads);
t1 is the moment the announcement's file name first appears in mirror1's
live.m3u8 for that camera, seen through inotify on the camera directory (the
playlist is replaced by a rename, and re-read on every event). Only
announcements arriving inside the measurement window count; one not listed
within a grace period after the window is reported as ``not_playable``.

The comparison, side by side in the same run: at each t0 a separate task
``cat``s the same CID through mirror2's Kubo and the time from t0 to the last
byte is the "kubo_cat_floor": what fetching the bytes by CID over bitswap from
the producer costs, without the mirror's admission, verification, fsyncs and
playlist rewrite. It is not an uncontended floor, and is not meant to be:
mirror1's mirror fetches through mirror1's Kubo, and mirror2's own mirror
process fetches the same CID through mirror2's Kubo at the same moment (Kubo
merges the two wants), just as the ipfs-cluster peers of both mirror nodes pin
every segment (the devnet's replication_max is the number of peers) and so
fetch the same blocks too. Both measurements thus see similar contention.

catchup: mirror1's mirror process is stopped for ``--offline`` seconds while
recording continues, then started again. Measured from the moment
``network.start_process`` returns (the mirror answers /healthz) until mirror1's
store (each day's segments.jsonl and the files it names) holds every catalog
segment of each camera up to the highest seq the catalog had just before the
restart; checked every 0.1 s. ``seconds_from_launch`` is the same from the
moment the process was spawned (the mirror begins catching up before /healthz
is first polled successfully). Reports segments repaired, seconds, rate
(target >= 20 segments/s) and the mirror's fetch_concurrency. Note that mirror1's
Kubo and cluster peer keep running during the outage, and the cluster pins each
segment on every peer, so by the restart most blocks are normally already in
mirror1's Kubo: ``blocks_pinned_at_mirror1_kubo`` says which fraction were.
Catch-up is then bounded by the catalog scan, Kubo's local ``cat``, sha256,
fsyncs and playlist rewrites rather than by the network.

With ``--whole-node`` the mirror's Kubo and cluster peer are stopped as well (the
mirror server is down): they are started again just before the mirror, so the
missed blocks come over bitswap from the producer and mirror2 while the mirror
catches up (and while the restarted cluster peer pins them too).

The comparison: afterwards the same CIDs are ``cat`` through mirror2's Kubo at
the same concurrency. mirror2 mirrors (and pins) them too, so they are local
there: ``local_cat_rate`` is the disk/Kubo floor for the same work, and says
which fraction of the blocks was pinned at mirror2 when it ran.

Each run creates and removes its own devnet under a temporary directory, prints
progress to stderr and one JSON line with the results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fetch_metrics, log, percentile, run_chosen
from mirror.config import load_config
from mirror.store import LIVE_PLAYLIST, Store
from node.catalog import Catalog
from node.devnet import network
from node.errors import DaemonError
from node.kubo import KuboClient
from node.layout import day_name
from node.procs import poll_until
from producer.watch import PlaylistWatcher

Key = tuple[str, str, str]  # factory, device, segment file name
LAG_GRACE_S = 20.0  # after the window: time left for the last announcements to become playable
CATCHUP_TIMEOUT_S = 600.0


def ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1000)  # NaN -> null in the JSON line


# --- the devnet ---------------------------------------------------------------------------------


@dataclass
class Devnet:
    dir: Path
    status: dict[str, Any]

    @property
    def cameras(self) -> list[tuple[str, str]]:
        return [(c["factory"], c["device"]) for c in self.status["cameras"]]

    def kubo(self, node: str, timeout: float = 30.0) -> KuboClient:
        return KuboClient(self.status["nodes"][node]["kubo_api"], timeout=timeout)

    def store(self, mirror: str) -> Path:
        return Path(self.status["mirrors"][mirror]["store"])

    async def mirror_health(self, mirror: str) -> dict[str, Any]:
        url = self._admin(mirror)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url + "/healthz") as r:
            result: dict[str, Any] = await r.json() if r.status == 200 else {}
            return result

    def _admin(self, mirror: str) -> str:
        admin = self.status["mirrors"][mirror]["admin"]
        if admin is None:  # not known before the mirror first started
            admin = network.status(self.dir)["mirrors"][mirror]["admin"]
        return str(admin)

    async def mirror_metrics(self, mirror: str) -> dict[str, float]:
        return await fetch_metrics(self._admin(mirror) + "/metrics")


@asynccontextmanager
async def devnet(cameras: int, segment: int) -> AsyncIterator[Devnet]:
    with tempfile.TemporaryDirectory(prefix="camswarm-mirror-bench-") as tmp:
        directory = Path(tmp).resolve()
        try:
            log(f"starting a devnet in {directory}: {cameras} cameras, 2 mirrors, {segment} s segments")
            await network.up(directory, mirrors=2, cameras=cameras, segment_seconds=segment, progress=log)
            yield Devnet(directory, network.status(directory))
        finally:
            log("stopping the devnet")
            with suppress(network.DevnetError):  # up failed before writing any state
                await network.down(directory)


# --- lag ----------------------------------------------------------------------------------------


def live_files(text: str) -> list[str]:
    """Segment file names listed in a live playlist (URIs are <day>/<file>)."""
    return [line.strip().rsplit("/", 1)[-1] for line in text.splitlines() if line.strip() and line[0] != "#"]


async def run_lag(args: argparse.Namespace) -> dict[str, Any]:
    announced: dict[Key, float] = {}  # t0, monotonic
    playable: dict[Key, float] = {}  # t1, monotonic
    sizes: dict[Key, int] = {}
    floor: dict[Key, float] = {}
    floor_errors: list[str] = []
    window: list[float] = []  # [opened, closed] once known
    subscribed = asyncio.Event()

    async with devnet(args.cameras, args.segment) as net:
        store = net.store("mirror1")
        concurrency = load_config(Path(net.status["mirrors"]["mirror1"]["config"])).node.fetch_concurrency
        watcher = PlaylistWatcher()
        followed: set[tuple[str, str]] = set()

        async def follow(factory: str, device: str) -> None:
            directory = store / factory / device

            async def exists() -> bool:
                return directory.is_dir()

            await poll_until(exists, timeout=180, what=f"{directory}", interval=0.05)
            wake, watch = watcher.watch(directory, LIVE_PLAYLIST)
            followed.add((factory, device))
            try:
                while True:
                    with suppress(OSError):
                        text = (directory / LIVE_PLAYLIST).read_text()
                        now = time.monotonic()
                        for name in live_files(text):
                            playable.setdefault((factory, device, name), now)
                    await wake.wait()
                    wake.clear()
            finally:
                watcher.unwatch(watch)

        async def cat_floor(kubo: KuboClient, key: Key, cid: str, size: int, t0: float) -> None:
            try:
                data = await kubo.cat(cid, length=size + 1)
            except DaemonError as exc:
                floor_errors.append(str(exc))
                return
            if len(data) == size:
                floor[key] = time.monotonic() - t0
            else:
                floor_errors.append(f"{cid}: {len(data)} bytes, announced {size}")

        floor_tasks: set[asyncio.Task[None]] = set()

        async def listen(floor_kubo: KuboClient) -> None:
            async with net.kubo("mirror1") as kubo:
                async for message in kubo.pubsub_sub(net.status["topic"]):
                    now = time.monotonic()
                    subscribed.set()
                    try:
                        ann = json.loads(message.data)
                        key = (str(ann["factory"]), str(ann["device"]), str(ann["filename"]))
                        cid, size = str(ann["cid"]), int(ann["size"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    if len(window) != 1 or key in announced:
                        continue  # outside the measurement window
                    announced[key] = now
                    sizes[key] = size
                    task = asyncio.create_task(cat_floor(floor_kubo, key, cid, size, now))
                    floor_tasks.add(task)
                    task.add_done_callback(floor_tasks.discard)

        async with net.kubo("mirror2", timeout=60) as floor_kubo:
            tasks = [asyncio.create_task(follow(f, d)) for f, d in net.cameras]
            tasks.append(asyncio.create_task(listen(floor_kubo)))
            try:

                async def warmed_up() -> bool:
                    for task in tasks:
                        if task.done():
                            task.result()  # a follower or the listener failed: raise it
                    return len(followed) == len(net.cameras) and subscribed.is_set()

                await poll_until(warmed_up, timeout=180, what="segments at mirror1", interval=0.05)
                window.append(time.monotonic())
                log(f"lag: measuring {args.cameras} cameras, {args.segment} s segments, {args.duration} s")
                await asyncio.sleep(args.duration)
                window.append(time.monotonic())
                pending = set(announced)

                async def all_playable() -> bool:
                    return pending <= playable.keys() and not floor_tasks

                log(f"lag: window closed, {len(announced)} announcements; waiting for the last ones")
                with suppress(TimeoutError):
                    await poll_until(
                        all_playable, timeout=LAG_GRACE_S, what="the last segments", interval=0.05
                    )
                metrics = await net.mirror_metrics("mirror1")
                health = await net.mirror_health("mirror1")
            finally:
                for task in [*tasks, *floor_tasks]:
                    task.cancel()
                for task in [*tasks, *floor_tasks]:
                    with suppress(asyncio.CancelledError, DaemonError, TimeoutError):
                        await task
                watcher.close()

    samples = [playable[k] - announced[k] for k in announced if k in playable]
    floors = list(floor.values())
    lag_sum = metrics.get("camswarm_mirror_announce_to_playable_seconds_sum", 0.0)
    lag_count = metrics.get("camswarm_mirror_announce_to_playable_seconds_count", 0.0)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return {
        "bench": "mirror_lag",
        "cameras": args.cameras,
        "segment_s": args.segment,
        "duration_s": args.duration,
        "fetch_concurrency": concurrency,
        "count": len(samples),
        "not_playable": len(announced) - len(samples),
        "segment_bytes_mean": round(statistics.mean(sizes.values())) if sizes else None,
        "p50_ms": ms(p50),
        "p90_ms": ms(percentile(samples, 90)),
        "p99_ms": ms(p99),
        "max_ms": ms(max(samples, default=float("nan"))),
        "target_met": bool(samples) and p50 <= 0.5 and p99 <= 2.0 and len(samples) == len(announced),
        # The mirror's own histogram (admission to live rewrite, inside the process), for comparison.
        "mirror_metric_mean_ms": round(1000 * lag_sum / lag_count) if lag_count else None,
        "mirror_stored": health.get("stored", {}),
        "kubo_cat_floor": {
            "via": "mirror2's Kubo, started at t0",
            "count": len(floors),
            "errors": len(floor_errors),
            "p50_ms": ms(percentile(floors, 50)),
            "p99_ms": ms(percentile(floors, 99)),
        },
    }


# --- catch-up -----------------------------------------------------------------------------------


def stored_seqs(store: Store, factory: str, device: str, days: set[str]) -> set[int]:
    """Seqs the store holds (indexed, file present) for a camera on the given days."""
    seqs: set[int] = set()
    for day in days:
        seqs |= set(store.read_day(factory, device, day))
    return seqs


async def run_catchup(args: argparse.Namespace) -> dict[str, Any]:
    async with devnet(args.cameras, args.segment) as net:
        mirror_config = load_config(Path(net.status["mirrors"]["mirror1"]["config"]))
        concurrency = mirror_config.node.fetch_concurrency
        store = Store(net.store("mirror1"))

        async def warmed_up() -> bool:
            cams = (await net.mirror_health("mirror1")).get("cameras", {})
            return all(cams.get(f"{f}/{d}", {}).get("segments", 0) >= 2 for f, d in net.cameras)

        await poll_until(warmed_up, timeout=180, what="segments of every camera at mirror1", interval=0.5)
        # --whole-node: the mirror server is down, its Kubo and cluster peer too, so what it
        # missed must come over bitswap from the other nodes after the restart.
        offline = ["mirror1", *(["cluster-mirror1", "kubo-mirror1"] if args.whole_node else [])]
        for name in offline:
            outcome = await network.stop_process(net.dir, name)
            log(f"catchup: {name} {outcome}")
        log(f"catchup: offline for {args.offline} s while recording continues")
        offline_until = time.monotonic() + args.offline
        while (left := offline_until - time.monotonic()) > 0:
            await asyncio.sleep(min(30.0, left))
            if offline_until - time.monotonic() > 1:
                log(f"catchup: {round(offline_until - time.monotonic())} s of the outage left")

        for name in reversed(offline[1:]):
            await network.start_process(net.dir, name)
            log(f"catchup: {name} running again")
        # The catalog as the mirror restarts, and what the (stopped) mirror's store lacks.
        missing: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        highest: dict[str, int] = {}
        async with Catalog(net.status["catalog"]) as catalog:
            for factory, device in net.cameras:
                docs = await catalog.segments_by_seq(factory, device, 0, 1 << 62)
                highest[f"{factory}/{device}"] = max((int(d["seq"]) for d in docs), default=-1)
                days = {day_name(d["start"]) for d in docs}
                have = await asyncio.to_thread(stored_seqs, store, factory, device, days)
                missing[(factory, device)] = {int(d["seq"]): d for d in docs if int(d["seq"]) not in have}
        cids = [d["cid"] for per in missing.values() for d in per.values()]
        async with net.kubo("mirror1") as kubo:
            pinned = await kubo.pin_ls()
        pinned_at_mirror1 = sum(1 for c in cids if c in pinned)
        log(f"catchup: {len(cids)} segments to repair (catalog highest seq {highest}); starting mirror1")

        launched = time.monotonic()
        await network.start_process(net.dir, "mirror1")
        started = time.monotonic()
        pending = {
            (f, d, day_name(doc["start"]), seq) for (f, d), per in missing.items() for seq, doc in per.items()
        }

        def check_store() -> None:
            for factory, device, day in {(f, d, day) for f, d, day, _ in pending}:
                held = set(store.read_day(factory, device, day))
                pending.difference_update({(factory, device, day, s) for s in held})

        async def caught_up() -> bool:
            await asyncio.to_thread(check_store)
            return not pending

        await poll_until(caught_up, timeout=CATCHUP_TIMEOUT_S, what="mirror1 to catch up", interval=0.1)
        done = time.monotonic()
        health = await net.mirror_health("mirror1")
        log(f"catchup: {len(cids)} segments in {done - started:.2f} s; comparing with cat through mirror2")
        floor = await local_cat(net, cids, concurrency)

    seconds = done - started
    rate = len(cids) / seconds if seconds > 0 else float("nan")
    return {
        "bench": "mirror_catchup",
        "cameras": args.cameras,
        "segment_s": args.segment,
        "offline_s": args.offline,
        "offline": "mirror, its Kubo and cluster peer" if args.whole_node else "mirror process only",
        "fetch_concurrency": concurrency,
        "catalog_highest_seq": highest,
        "segments_repaired": len(cids),
        "seconds": round(seconds, 3),
        "rate_per_s": round(rate, 1),
        "target_met": rate >= 20,
        "seconds_from_launch": round(done - launched, 3),
        "blocks_pinned_at_mirror1_kubo": round(pinned_at_mirror1 / len(cids), 3) if cids else None,
        "mirror_stored": health.get("stored", {}),
        "mirror_last_catchup": health.get("last_catchup", {}),
        "local_cat_rate": floor,
    }


async def local_cat(net: Devnet, cids: list[str], concurrency: int) -> dict[str, Any]:
    """Comparison: the same CIDs through mirror2's Kubo, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []
    async with net.kubo("mirror2", timeout=60) as kubo:
        pinned = await kubo.pin_ls()

        async def one(cid: str) -> None:
            async with gate:
                try:
                    await kubo.cat(cid)
                except DaemonError as exc:
                    errors.append(str(exc))

        began = time.monotonic()
        await asyncio.gather(*(one(c) for c in cids))
        seconds = time.monotonic() - began
    return {
        "via": "mirror2's Kubo",
        "segments": len(cids),
        "errors": len(errors),
        "seconds": round(seconds, 3),
        "rate_per_s": round(len(cids) / seconds, 1) if seconds > 0 else None,
        "concurrency": concurrency,
        "blocks_local": round(sum(1 for c in cids if c in pinned) / len(cids), 3) if cids else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    lag = sub.add_parser("lag", help="announcement -> playable at a mirror")
    lag.add_argument("--cameras", type=int, default=2)
    lag.add_argument("--segment", type=int, default=4, help="segment seconds (4 s at 2 Mbit/s is about 1 MB)")
    lag.add_argument("--duration", type=int, default=180, help="measurement window, seconds")
    catchup = sub.add_parser("catchup", help="repair rate after a mirror outage")
    catchup.add_argument("--cameras", type=int, default=2)
    catchup.add_argument("--segment", type=int, default=2, help="segment seconds")
    catchup.add_argument("--offline", type=int, default=600, help="seconds mirror1 stays stopped")
    catchup.add_argument(
        "--whole-node",
        action="store_true",
        help="stop mirror1's Kubo and cluster peer too (blocks come over bitswap)",
    )
    return run_chosen(parser, {"lag": run_lag, "catchup": run_catchup})


if __name__ == "__main__":
    sys.exit(main())
