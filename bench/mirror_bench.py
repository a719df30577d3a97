"""Mirror benchmarks on a private devnet (real Kubo, cluster, catalog, ffmpeg, RTSP, mirrors).

    .venv/bin/python bench/mirror_bench.py lag     [--cameras 2] [--segment 4] [--duration 180]
                                                   [--netns --link-delay-ms 20]
    .venv/bin/python bench/mirror_bench.py catchup [--cameras 2] [--segment 2] [--offline 600] [--whole-node]

Both run a devnet of one producer node and two mirror nodes, its producer
cutting segments of ``--segment`` seconds (``network.up(segment_seconds=...)``).

lag: announcement -> playable at each mirror (target p50 <= 500 ms, p99 <= 2 s
for ~1 MB segments; the devnet cameras stream ~2.2 Mbit/s, so 4-second segments
are ~1 MB). For each mirror, t0 is the arrival of the announcement at a
subscription this script opens on that mirror's own Kubo (the same Kubo and
pubsub stream the mirror reads); t1 is the moment the announcement's file name
first appears in that mirror's live.m3u8 for the camera, seen through inotify
on the camera directory (the playlist is replaced by a rename, and re-read on
every event). Only announcements arriving inside the measurement window count;
one not listed within a grace period after the window is reported as
``not_playable``. The raw samples are in the result (``samples_ms``).

The comparison, side by side in the same run: at each t0 a separate task
``cat``s the same CID through mirror2's Kubo and the time from t0 (mirror1's) to the last
byte is the "kubo_cat_floor": what fetching the bytes by CID over bitswap from
the producer costs, without the mirror's admission, verification, fsyncs and
playlist rewrite. It is not an uncontended floor, and is not meant to be:
mirror1's mirror fetches through mirror1's Kubo, and mirror2's own mirror
process fetches the same CID through mirror2's Kubo at the same moment (Kubo
merges the two wants), just as the ipfs-cluster peers of both mirror nodes pin
every segment (the devnet's replication_max is the number of peers) and so
fetch the same blocks too. Both measurements thus see similar contention.

With ``--netns`` the devnet puts every host in a network namespace of its own
and each mirror host's link gets ``--link-delay-ms`` of delay each way (linkd,
``network.fault``), so a mirror is that far from the producer and the catalog.
This script runs in the root namespace, so the subscription stream it reads
crosses the mirror's delayed link once more: t0 is moved back by one link delay,
and the comparison, whose request and answer each cross mirror2's link,
is timed from the request reaching mirror2's Kubo (two delays less). Without
``--netns`` everything is on loopback; the result says which (``network``).

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analysis import distribution_ms, samples_ms
from bench.common import fetch_health, fetch_metrics, log, percentile, run_chosen
from mirror.config import load_config
from mirror.store import LIVE_PLAYLIST, Store
from node.catalog import Catalog
from node.devnet import network
from node.devnet.netns import Fault
from node.errors import DaemonError
from node.kubo import KuboClient
from node.layout import day_name
from node.procs import poll_until
from producer.watch import PlaylistWatcher

Key = tuple[str, str, str]  # factory, device, segment file name
LAG_GRACE_S = 20.0  # after the window: time left for the last announcements to become playable
CATCHUP_TIMEOUT_S = 600.0


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
        return await fetch_health(self._admin(mirror) + "/healthz")

    def _admin(self, mirror: str) -> str:
        admin = self.status["mirrors"][mirror]["admin"]
        if admin is None:  # not known before the mirror first started
            admin = network.status(self.dir)["mirrors"][mirror]["admin"]
        return str(admin)

    async def mirror_metrics(self, mirror: str) -> dict[str, float]:
        return await fetch_metrics(self._admin(mirror) + "/metrics")


@asynccontextmanager
async def devnet(
    cameras: int, segment: int, *, netns: bool = False, mirror_delay_ms: float = 0.0
) -> AsyncIterator[Devnet]:
    """A devnet with 2 mirrors; with ``netns``, each mirror host's link delayed by ``mirror_delay_ms``."""
    with tempfile.TemporaryDirectory(prefix="camswarm-mirror-bench-") as tmp:
        directory = Path(tmp).resolve()
        try:
            where = "network namespaces" if netns else "loopback"
            log(f"starting a devnet on {where} in {directory}: {cameras} cameras, 2 mirrors")
            await network.up(  # DevnetError says what a machine lacks for netns
                directory,
                mirrors=2,
                cameras=cameras,
                segment_seconds=segment,
                netns_hosts=netns,
                progress=log,
            )
            status = network.status(directory)
            if netns and mirror_delay_ms:
                for mirror in status["mirrors"]:
                    await network.fault(directory, mirror, Fault(delay_ms=mirror_delay_ms))
                    log(f"{mirror}'s link: {mirror_delay_ms:g} ms of delay each way")
            yield Devnet(directory, status)
        finally:
            log("stopping the devnet")
            with suppress(network.DevnetError):  # up failed before writing any state
                await network.down(directory)


# --- lag ----------------------------------------------------------------------------------------


def live_files(text: str) -> list[str]:
    """Segment file names listed in a live playlist (URIs are <day>/<file>)."""
    return [line.strip().rsplit("/", 1)[-1] for line in text.splitlines() if line.strip() and line[0] != "#"]


async def run_lag(args: argparse.Namespace) -> dict[str, Any]:
    delay_s = args.link_delay_ms / 1000 if args.netns else 0.0
    announced: dict[str, dict[Key, float]] = {}  # mirror -> t0, monotonic
    playable: dict[str, dict[Key, float]] = {}  # mirror -> t1, monotonic
    sizes: dict[Key, int] = {}
    floor: dict[Key, float] = {}
    floor_errors: list[str] = []
    window: list[float] = []  # [opened, closed] once known
    followed: set[tuple[str, str, str]] = set()
    subscribed: set[str] = set()

    async with devnet(
        args.cameras, args.segment, netns=args.netns, mirror_delay_ms=args.link_delay_ms
    ) as net:
        mirrors = sorted(net.status["mirrors"])
        concurrency = load_config(Path(net.status["mirrors"]["mirror1"]["config"])).node.fetch_concurrency
        watcher = PlaylistWatcher()
        for mirror in mirrors:
            announced[mirror], playable[mirror] = {}, {}

        async def follow(mirror: str, factory: str, device: str) -> None:
            directory = net.store(mirror) / factory / device

            async def exists() -> bool:
                return directory.is_dir()

            await poll_until(exists, timeout=180, what=f"{directory}", interval=0.05)
            wake, watch = watcher.watch(directory, LIVE_PLAYLIST)
            followed.add((mirror, factory, device))
            try:
                while True:
                    with suppress(OSError):
                        text = (directory / LIVE_PLAYLIST).read_text()
                        now = time.monotonic()
                        for name in live_files(text):
                            playable[mirror].setdefault((factory, device, name), now)
                    await wake.wait()
                    wake.clear()
            finally:
                watcher.unwatch(watch)

        async def cat_floor(kubo: KuboClient, key: Key, cid: str, size: int, sent: float) -> None:
            try:
                data = await kubo.cat(cid, length=size + 1)
            except DaemonError as exc:
                floor_errors.append(str(exc))
                return
            if len(data) == size:
                # From the request reaching the other mirror's Kubo to the last byte there:
                # the request and the answer each cross that host's (delayed) link once.
                floor[key] = time.monotonic() - sent - 2 * delay_s
            else:
                floor_errors.append(f"{cid}: {len(data)} bytes, announced {size}")

        floor_tasks: set[asyncio.Task[None]] = set()

        async def listen(mirror: str, floor_kubo: KuboClient) -> None:
            async with net.kubo(mirror) as kubo:
                async for message in kubo.pubsub_sub(net.status["topic"]):
                    seen = time.monotonic()
                    now = seen - delay_s  # it reached the mirror's Kubo one link delay before us
                    subscribed.add(mirror)
                    try:
                        ann = json.loads(message.data)
                        key = (str(ann["factory"]), str(ann["device"]), str(ann["filename"]))
                        cid, size = str(ann["cid"]), int(ann["size"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    if len(window) != 1 or key in announced[mirror]:
                        continue  # outside the measurement window
                    announced[mirror][key] = now
                    if mirror != mirrors[0]:
                        continue
                    sizes[key] = size
                    task = asyncio.create_task(cat_floor(floor_kubo, key, cid, size, seen))
                    floor_tasks.add(task)
                    task.add_done_callback(floor_tasks.discard)

        async with net.kubo(mirrors[-1], timeout=60) as floor_kubo:
            tasks = [asyncio.create_task(follow(m, f, d)) for m in mirrors for f, d in net.cameras]
            tasks += [asyncio.create_task(listen(m, floor_kubo)) for m in mirrors]
            try:

                async def warmed_up() -> bool:
                    for task in tasks:
                        if task.done():
                            task.result()  # a follower or a listener failed: raise it
                    return len(followed) == len(tasks) - len(mirrors) and len(subscribed) == len(mirrors)

                await poll_until(warmed_up, timeout=180, what="segments at every mirror", interval=0.05)
                window.append(time.monotonic())
                log(f"lag: measuring {args.cameras} cameras, {args.segment} s segments, {args.duration} s")
                await asyncio.sleep(args.duration)
                window.append(time.monotonic())

                async def all_playable() -> bool:
                    return not floor_tasks and all(announced[m].keys() <= playable[m].keys() for m in mirrors)

                total = sum(len(a) for a in announced.values())
                log(f"lag: window closed, {total} announcements; waiting for the last ones")
                with suppress(TimeoutError):
                    await poll_until(
                        all_playable, timeout=LAG_GRACE_S, what="the last segments", interval=0.05
                    )
                metrics = {m: await net.mirror_metrics(m) for m in mirrors}
                health = {m: await net.mirror_health(m) for m in mirrors}
            finally:
                for task in [*tasks, *floor_tasks]:
                    task.cancel()
                for task in [*tasks, *floor_tasks]:
                    with suppress(asyncio.CancelledError, DaemonError, TimeoutError):
                        await task
                watcher.close()

    per_mirror: dict[str, Any] = {}
    for mirror in mirrors:
        got = announced[mirror]
        samples = [playable[mirror][k] - got[k] for k in got if k in playable[mirror]]
        lag_sum = metrics[mirror].get("camswarm_mirror_announce_to_playable_seconds_sum", 0.0)
        lag_count = metrics[mirror].get("camswarm_mirror_announce_to_playable_seconds_count", 0.0)
        per_mirror[mirror] = {
            "announcements": len(got),
            "not_playable": len(got) - len(samples),
            **distribution_ms(samples),
            "target_met": bool(samples)
            and percentile(samples, 50) <= 0.5
            and percentile(samples, 99) <= 2.0
            and len(samples) == len(got),
            # The mirror's own histogram (admission to live rewrite, inside the process).
            "mirror_metric_mean_ms": round(1000 * lag_sum / lag_count) if lag_count else None,
            "mirror_stored": health[mirror].get("stored", {}),
            "samples_ms": samples_ms(samples),
        }
    floors = list(floor.values())
    return {
        "bench": "mirror_lag",
        "network": {
            "kind": "netns" if args.netns else "loopback",
            "mirror_link_delay_ms": args.link_delay_ms if args.netns else 0.0,
        },
        "cameras": args.cameras,
        "segment_s": args.segment,
        "duration_s": args.duration,
        "fetch_concurrency": concurrency,
        "segment_bytes_mean": round(statistics.mean(sizes.values())) if sizes else None,
        "mirrors": per_mirror,
        "target_met": all(m["target_met"] for m in per_mirror.values()),
        "kubo_cat_floor": {
            "via": f"{mirrors[-1]}'s Kubo, started at {mirrors[0]}'s t0",
            "errors": len(floor_errors),
            **distribution_ms(floors),
            "samples_ms": samples_ms(floors),
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
    lag.add_argument("--netns", action="store_true", help="hosts in network namespaces (devnet --netns)")
    lag.add_argument(
        "--link-delay-ms", type=float, default=20.0, help="with --netns: delay on each mirror host's link"
    )
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
