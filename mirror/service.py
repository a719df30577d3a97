"""The mirror process: subscribe, admit, fetch by CID, store, rebuild playlists, catch up.

Tasks on one event loop:

- **subscribe**: the pubsub stream of the local Kubo. Each payload goes through
  :class:`~mirror.admission.Admission`; an admitted announcement is offered to
  the live queue without waiting. A full queue marks a gap for catch-up, so the
  subscription never blocks (Kubo would drop messages of a slow reader anyway).
- **fetch workers** (``fetch_concurrency``): take live work first, then
  repairs; ``cat`` the CID through Kubo, check size (and sha256 when the catalog
  has it), write the file atomically, then rewrite the live playlist and mark
  the day playlist for rewriting. A failed fetch is left to catch-up.
- **catch-up**: per camera, pages through the catalog by seq from a watermark
  (everything below it is stored) and queues what the store lacks, after
  verifying the catalog document's signature like a pubsub message. It runs at
  start, every ``catchup_interval_s``, when the subscription reconnects and soon
  after a seq hole or an overflow.
- **day playlists**: rewritten off the event loop, coalesced per camera-day.
- **housekeeping**: retention by age and byte budget, ENDLIST on finished days,
  pins that failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mirror.admission import Admission, Limits, RejectCounter, Rejected
from mirror.config import MirrorConfig
from mirror.metrics import MirrorMetrics
from mirror.playlists import compose_day, compose_live
from mirror.store import DAY_PLAYLIST, INDEX, CameraIndex, Store, StoredSegment
from node import announce
from node.announce import Announcement
from node.catalog import Catalog
from node.errors import DaemonError
from node.kubo import KuboClient
from node.layout import day_name
from node.logs import RateLimiter, kv
from node.peering import keep_peered

log = logging.getLogger("camswarm.mirror")

CATALOG_PAGE = 500
KEEP_RECENT = 128  # newest segments per camera kept in memory for the live playlist
DAY_END_GRACE_S = 60.0  # a day's playlist gets ENDLIST this long after UTC midnight
HOLE_WAIT_S = 1.0  # a seq hole is given this long to fill from pubsub before catch-up runs
LATE_FACTOR = 1.5  # no announcement for this many segment lengths (+1 s): ask the catalog


@dataclass(frozen=True)
class Work:
    announcement: Announcement
    via: str  # "live" or "repair"
    received: float  # time.monotonic() when it was admitted
    sha256: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        a = self.announcement
        return a.factory, a.device, a.seq


class WorkQueue:
    """Live work (bounded, never waits: overflow is refused) ahead of repairs (bounded, waits)."""

    def __init__(self, live_size: int, repair_size: int) -> None:
        self.live: asyncio.Queue[Work] = asyncio.Queue(live_size)
        self.repair: asyncio.Queue[Work] = asyncio.Queue(repair_size)
        self._added = asyncio.Event()

    def offer_live(self, work: Work) -> bool:
        try:
            self.live.put_nowait(work)
        except asyncio.QueueFull:
            return False
        self._added.set()
        return True

    async def put_repair(self, work: Work) -> None:
        await self.repair.put(work)
        self._added.set()

    async def get(self) -> Work:
        while True:
            for queue in (self.live, self.repair):
                if not queue.empty():
                    return queue.get_nowait()
            await self._added.wait()
            self._added.clear()


class FetchError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class DayWrite:
    dirty: bool = False
    running: bool = False
    not_before: float = 0.0
    ended_written: bool = False  # the last rewrite carried ENDLIST


@dataclass
class CameraRuntime:
    index: CameraIndex
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    catalog_through: int | None = None  # every catalog seq <= this is stored (or below the floor)
    hole_check: asyncio.TimerHandle | None = None
    late_check: asyncio.TimerHandle | None = None
    highest_queued: int = -1  # the highest seq ever queued for fetching (stored or not yet)


class Mirror:
    def __init__(self, config: MirrorConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        node = config.node
        self.clock = clock
        self.store = Store(node.store_dir)
        self.kubo = KuboClient(node.kubo_api, timeout=node.fetch_timeout_s)
        self.catalog = Catalog(node.catalog, node.catalog_db)
        self.metrics = MirrorMetrics()
        self.metrics.stored_bytes.set_function(self.stored_bytes)  # read from the index at each scrape
        self.rejects = RejectCounter()
        self.cameras: dict[tuple[str, str], CameraRuntime] = {}
        self.inflight: set[tuple[str, str, int]] = set()
        self.queue = WorkQueue(node.queue_size, max(node.queue_size, 2 * CATALOG_PAGE))
        self.admission = Admission(
            trusted=config.trusted_keys(),
            stored=self._stored,
            highest=self._highest,
            wants=config.wants,
            limits=Limits(max_age_s=node.retention_days * 86_400.0),
        )
        self.catchup_wakeup = asyncio.Event()
        self.day_writes: dict[tuple[str, str, str], DayWrite] = {}
        self.day_wakeup = asyncio.Event()
        self.unpinned: set[str] = set()
        self.subscribed = False
        self.catalog_ok: bool | None = None
        self.last_catchup: dict[str, Any] = {}
        self.limiter = RateLimiter(30.0)
        self.started = time.time()
        self.stats = collections.Counter[str]()
        self.failures_in_row = 0
        self.retry_handle: asyncio.TimerHandle | None = None
        self.drop_until = 0.0  # fault injection: ignore pubsub messages until this monotonic time

    # --- the in-memory view -------------------------------------------------------------------

    def camera(self, factory: str, device: str) -> CameraRuntime:
        key = (factory, device)
        runtime = self.cameras.get(key)
        if runtime is None:
            index = CameraIndex(factory, device, self.store.camera_dir(factory, device))
            runtime = self.cameras[key] = CameraRuntime(index)
        return runtime

    def _stored(self, factory: str, device: str, seq: int) -> bool:
        runtime = self.cameras.get((factory, device))
        return runtime is not None and runtime.index.has(seq)

    def _highest(self, factory: str, device: str) -> int | None:
        runtime = self.cameras.get((factory, device))
        return None if runtime is None else runtime.index.seqs.highest

    def _warn(self, key: str, event: str, **fields: Any) -> None:
        allowed, suppressed = self.limiter.allow(key)
        if allowed:
            if suppressed:
                fields["suppressed"] = suppressed
            log.warning(event, extra=kv(**fields))

    def stored_bytes(self) -> int:
        """Bytes of segments in the store, from the camera indexes."""
        return sum(r.index.bytes for r in self.cameras.values())

    # --- start-up ------------------------------------------------------------------------------

    async def load(self) -> None:
        removed = await asyncio.to_thread(self.store.remove_stale_temporaries)
        cameras = await asyncio.to_thread(list, self.store.cameras())
        for factory, device in cameras:
            index = await asyncio.to_thread(self.store.load_camera, factory, device, keep_recent=KEEP_RECENT)
            self.cameras[(factory, device)] = CameraRuntime(index)
            # Playlists are derived: redo the newest days and any day whose index is newer. A day
            # whose playlist was written after the day ended already carries ENDLIST: housekeeping
            # must not take it for unwritten and redo every finished day after each restart.
            stale, finished = await asyncio.to_thread(self._day_playlist_states, index)
            for day in finished:
                self.day_writes[(factory, device, day)] = DayWrite(ended_written=True)
            for day in list(index.days)[-2:] + stale:
                self.mark_day(index, day)
        log.info(
            "store_loaded",
            extra=kv(
                cameras=len(self.cameras),
                segments=sum(len(r.index.seqs) for r in self.cameras.values()),
                bytes=self.stored_bytes(),
                stale_temporaries=removed,
            ),
        )

    def _day_playlist_states(self, index: CameraIndex) -> tuple[list[str], list[str]]:
        """The days whose playlist is missing or older than their index, and those whose
        (current) playlist was written once the day had ended."""
        stale, finished = [], []
        for day in index.days:
            directory = index.root / day
            try:
                playlist = (directory / DAY_PLAYLIST).stat().st_mtime
            except FileNotFoundError:
                stale.append(day)
                continue
            try:
                newer_index = (directory / INDEX).stat().st_mtime > playlist
            except FileNotFoundError:
                newer_index = False
            if newer_index:
                stale.append(day)
            elif playlist >= self._day_end(day):
                finished.append(day)
        return stale, finished

    # --- subscription --------------------------------------------------------------------------

    async def subscribe(self) -> None:
        topic = self.config.node.topic
        delay = 0.5
        while True:
            try:
                self.subscribed = True
                self.metrics.subscribed.set(1)
                # Whatever was published while we were not subscribed comes from the catalog.
                self.catchup_wakeup.set()
                async for message in self.kubo.pubsub_sub(topic):
                    delay = 0.5
                    self.on_message(message.data)
                reason = "stream ended"
            except DaemonError as exc:
                reason = str(exc)
            except Exception as exc:  # the subscription must outlive any fault
                reason = f"{type(exc).__name__}: {exc}"
            self.subscribed = False
            self.metrics.subscribed.set(0)
            self._warn("subscribe", "subscription_lost", topic=topic, error=reason, retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def on_message(self, data: bytes) -> None:
        """Admit one pubsub payload and queue its fetch; never raises on input."""
        received = time.monotonic()
        if received < self.drop_until:
            self.stats["dropped_by_fault"] += 1
            return
        try:
            announcement = self.admission.admit(data, datetime.fromtimestamp(self.clock(), UTC))
        except Rejected as exc:
            self.reject(exc, source="pubsub")
            return
        work = Work(announcement, "live", received)
        if work.key in self.inflight:  # already on its way (a repair, or the same message twice)
            self.stats["duplicate"] += 1
            return
        runtime = self.camera(announcement.factory, announcement.device)
        top = max(runtime.index.seqs.highest or -1, runtime.highest_queued)
        if top >= 0 and announcement.seq > top + 1:
            self.schedule_hole_check(runtime)
        runtime.highest_queued = max(runtime.highest_queued, announcement.seq)
        self.expect_next(runtime, announcement.duration)
        if self.queue.offer_live(work):
            self.inflight.add(work.key)
        else:
            self.metrics.overflows.inc()
            self.metrics.gaps_found.inc()
            self._warn("overflow", "queue_full", camera=runtime.index.key, seq=announcement.seq)
            self.catchup_wakeup.set()
        self._gauge_queue()

    def reject(self, exc: Rejected, *, source: str) -> None:
        self.rejects.add(exc.reason)
        self.metrics.rejects.labels(exc.reason).inc()
        if not exc.benign:
            self._warn(
                f"reject {exc.reason}",
                "message_rejected",
                source=source,
                reason=exc.reason,
                detail=exc.detail,
            )

    def expect_next(self, runtime: CameraRuntime, duration: float) -> None:
        """Pubsub can lose the newest announcement, leaving no later seq to reveal the hole:
        when the next one is late, the catalog is asked."""
        if runtime.late_check is not None:
            runtime.late_check.cancel()

        def fire() -> None:
            runtime.late_check = None
            self.catchup_wakeup.set()

        runtime.late_check = asyncio.get_running_loop().call_later(duration * LATE_FACTOR + 1.0, fire)

    def schedule_hole_check(self, runtime: CameraRuntime) -> None:
        """A seq hole: give pubsub a moment to deliver the missing ones, then ask the catalog."""
        if runtime.hole_check is None:
            loop = asyncio.get_running_loop()

            def fire() -> None:
                runtime.hole_check = None
                self.catchup_wakeup.set()

            runtime.hole_check = loop.call_later(HOLE_WAIT_S, fire)

    def _gauge_queue(self) -> None:
        self.metrics.queue_depth.labels("live").set(self.queue.live.qsize())
        self.metrics.queue_depth.labels("repair").set(self.queue.repair.qsize())

    # --- fetching ------------------------------------------------------------------------------

    async def fetch_worker(self) -> None:
        while True:
            work = await self.queue.get()
            self._gauge_queue()
            try:
                await self.fetch_and_store(work)
            except FetchError as exc:
                self.metrics.fetch_failures.labels(exc.reason).inc()
                a = work.announcement
                self._warn(
                    f"fetch {exc.reason}",
                    "fetch_failed",
                    camera=f"{a.factory}/{a.device}",
                    seq=a.seq,
                    cid=a.cid,
                    error=str(exc),
                )
                self._retry_later()
            except OSError as exc:
                self.metrics.fetch_failures.labels("disk").inc()
                self._warn("disk", "store_write_failed", error=str(exc))
                self._retry_later()
            except Exception as exc:  # one bad fetch must not stop the worker
                self.metrics.fetch_failures.labels("unexpected").inc()
                log.exception("fetch_crashed", extra=kv(cid=work.announcement.cid, error=str(exc)))
                self._retry_later()
            else:
                self.failures_in_row = 0
            finally:
                self.inflight.discard(work.key)

    def _retry_later(self) -> None:
        """A failed fetch is found again by catch-up: run it soon, backing off while failures go on."""
        self.failures_in_row += 1
        if self.retry_handle is None:
            delay = min(0.5 * 2 ** min(self.failures_in_row, 10), self.config.node.catchup_interval_s)

            def fire() -> None:
                self.retry_handle = None
                self.catchup_wakeup.set()

            self.retry_handle = asyncio.get_running_loop().call_later(delay, fire)

    async def _cat(self, announcement: Announcement) -> bytes:
        try:
            return await self.kubo.cat(announcement.cid, length=announcement.size + 1)
        except DaemonError as exc:
            raise FetchError("kubo", str(exc)) from None

    async def fetch_and_store(self, work: Work) -> None:
        a = work.announcement
        runtime = self.camera(a.factory, a.device)
        if runtime.index.has(a.seq):
            return
        data = await self._cat(a)
        if len(data) != a.size:
            raise FetchError("size", f"got {len(data)} bytes, the announcement says {a.size}")
        if work.sha256 is not None and hashlib.sha256(data).hexdigest() != work.sha256:
            raise FetchError("sha256", "content does not match the catalog's sha256")
        segment = StoredSegment.of(a)
        await asyncio.to_thread(self.store.put, segment, data)
        async with runtime.lock:
            runtime.index.remember(segment, keep_recent=KEEP_RECENT)
            await self._rewrite_live(runtime)
        now = time.monotonic()
        self.metrics.stored.labels(runtime.index.key, work.via).inc()
        self.metrics.age.labels(work.via).observe(max(0.0, self.clock() - segment.end.timestamp()))
        if work.via == "live":
            self.metrics.lag.observe(now - work.received)
        else:
            self.metrics.gaps_repaired.inc()
        self.stats[work.via] += 1
        self.mark_day(runtime.index, segment.day)
        if self.config.node.pin:
            await self._pin(segment.cid)

    async def _pin(self, cid: str) -> None:
        try:
            await self.kubo.pin_add(cid)
            self.unpinned.discard(cid)
        except DaemonError as exc:
            self.unpinned.add(cid)
            self._warn("pin", "pin_failed", cid=cid, error=str(exc))

    async def _rewrite_live(self, runtime: CameraRuntime) -> None:
        index = runtime.index
        segments = [s.playlist_segment(in_day_dir=False) for s in index.recent.values()]
        text, state = compose_live(segments, window=self.config.node.live_window, previous=index.live_state)
        if state != index.live_state or not (index.root / "live.m3u8").exists():
            await asyncio.to_thread(self.store.write_live, index.factory, index.device, text, state)
            index.live_state = state

    # --- day playlists -------------------------------------------------------------------------

    def mark_day(self, index: CameraIndex, day: str) -> None:
        self.day_writes.setdefault((index.factory, index.device, day), DayWrite()).dirty = True
        self.day_wakeup.set()

    @staticmethod
    def _day_end(day: str) -> float:
        """When a day's playlist gets ENDLIST (the UTC day's end plus a grace for late segments)."""
        end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1, seconds=DAY_END_GRACE_S)
        return end.timestamp()

    def day_ended(self, day: str) -> bool:
        return self.clock() >= self._day_end(day)

    async def day_writer(self) -> None:
        while True:
            await self.day_wakeup.wait()
            self.day_wakeup.clear()
            now = time.monotonic()
            soonest: float | None = None
            for key, write in list(self.day_writes.items()):
                if not write.dirty or write.running:
                    continue
                if write.not_before > now:
                    soonest = write.not_before if soonest is None else min(soonest, write.not_before)
                    continue
                write.running = True
                write.dirty = False
                asyncio.get_running_loop().create_task(self._write_day(key, write))
            if soonest is not None:
                asyncio.get_running_loop().call_later(soonest - now, self.day_wakeup.set)

    async def _write_day(self, key: tuple[str, str, str], write: DayWrite) -> None:
        factory, device, day = key
        runtime = self.camera(factory, device)
        started = time.monotonic()
        try:
            async with runtime.lock:
                segments = runtime.index.day_segments(day)
                if segments is None:
                    segments = await asyncio.to_thread(self.store.read_day, factory, device, day)
                    runtime.index.cache_day(day, segments)
                listed = [s.playlist_segment(in_day_dir=True) for s in segments.values()]
            ended = self.day_ended(day)
            if listed:
                text = await asyncio.to_thread(compose_day, listed, ended=ended)
                path = runtime.index.root / day / DAY_PLAYLIST
                await asyncio.to_thread(self.store.write_playlist, path, text)
            write.ended_written = ended
        except Exception as exc:  # a playlist is redone at the next change
            write.dirty = True
            self._warn(
                "day playlist", "day_playlist_failed", camera=runtime.index.key, day=day, error=str(exc)
            )
        finally:
            took = time.monotonic() - started
            # Long days cost more to compose: rewrite at most every 4x the last cost (>= 1 s).
            write.not_before = time.monotonic() + max(1.0, 4 * took)
            write.running = False
            if write.dirty:
                self.day_wakeup.set()

    # --- catch-up ------------------------------------------------------------------------------

    async def catchup_loop(self) -> None:
        interval = self.config.node.catchup_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.catchup_wakeup.wait(), interval)
            self.catchup_wakeup.clear()
            try:
                await self.catch_up()
                self.catalog_ok = True
            except DaemonError as exc:
                self.catalog_ok = False
                self._warn("catch-up", "catch_up_failed", error=str(exc))
            except Exception as exc:  # retried at the next interval
                self.catalog_ok = False
                log.exception("catch_up_crashed", extra=kv(error=str(exc)))

    async def catch_up(self) -> int:
        """One pass over every mirrored camera; returns how many segments were queued."""
        started = time.monotonic()
        names = set(self.cameras)
        for doc in await self.catalog.list_cameras():
            factory, device = doc.get("factory"), doc.get("device")
            if isinstance(factory, str) and isinstance(device, str):
                names.add((factory, device))
        queued = 0
        for factory, device in sorted(names):
            valid = announce.NAME.fullmatch(factory) and announce.NAME.fullmatch(device)
            if valid and self.config.wants(factory, device):
                queued += await self.catch_up_camera(factory, device)
        self.last_catchup = {
            "at": announce.format_start(datetime.fromtimestamp(self.clock(), UTC)),
            "queued": queued,
            "took_s": round(time.monotonic() - started, 3),
        }
        if queued:
            log.info("catch_up_queued", extra=kv(segments=queued, took_s=self.last_catchup["took_s"]))
        return queued

    async def catch_up_camera(self, factory: str, device: str) -> int:
        runtime = self.camera(factory, device)
        index = runtime.index
        horizon = datetime.fromtimestamp(self.clock() - self.config.node.backfill_hours * 3600, UTC)
        cursor = runtime.catalog_through
        if cursor is None:
            first = await self.catalog.first_segment_since(factory, device, horizon)
            if first is None:
                return 0
            cursor = int(first["seq"]) - 1
        cursor = max(cursor, index.floor - 1)
        first_missing: int | None = None
        queued = 0
        while True:
            docs = await self.catalog.segments_after(factory, device, cursor, CATALOG_PAGE)
            for doc in docs:
                seq = doc.get("seq")
                if type(seq) is not int or seq <= cursor:
                    continue
                cursor = seq
                if index.has(seq):
                    continue
                if (factory, device, seq) in self.inflight:
                    first_missing = seq if first_missing is None else first_missing
                    continue
                work = self._repair_work(doc)
                if work is None:
                    continue
                first_missing = seq if first_missing is None else first_missing
                self.inflight.add(work.key)
                runtime.highest_queued = max(runtime.highest_queued, seq)
                self.metrics.gaps_found.inc()
                await self.queue.put_repair(work)
                self._gauge_queue()
                queued += 1
            if len(docs) < CATALOG_PAGE:
                break
        runtime.catalog_through = cursor if first_missing is None else first_missing - 1
        return queued

    def _repair_work(self, doc: dict[str, Any]) -> Work | None:
        """A catalog document verified like a pubsub message (the catalog is not trusted either)."""
        try:
            data = announce.encode(announce.from_document(doc))
        except (KeyError, TypeError, ValueError) as exc:
            self.reject(Rejected("schema", f"catalog document: {exc}"), source="catalog")
            return None
        try:
            announcement = self.admission.admit(data, datetime.fromtimestamp(self.clock(), UTC))
        except Rejected as exc:
            self.reject(exc, source="catalog")
            return None
        sha = doc.get("sha256")
        return Work(announcement, "repair", time.monotonic(), sha if isinstance(sha, str) else None)

    # --- housekeeping --------------------------------------------------------------------------

    async def housekeeping_loop(self, interval: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.housekeeping()
            except OSError as exc:
                self._warn("housekeeping", "housekeeping_failed", error=str(exc))

    async def housekeeping(self) -> None:
        for runtime in list(self.cameras.values()):
            index = runtime.index
            for day in list(index.days):
                write = self.day_writes.get((index.factory, index.device, day))
                if self.day_ended(day) and (write is None or not (write.ended_written or write.dirty)):
                    self.mark_day(index, day)
        await self.apply_retention()
        for cid in list(self.unpinned):
            await self._pin(cid)

    async def apply_retention(self) -> int:
        """Drop camera-days past retention_days, then the oldest past the byte budget."""
        node = self.config.node
        oldest_kept = day_name(datetime.fromtimestamp(self.clock() - node.retention_days * 86_400, UTC))
        dropped = 0
        for runtime in list(self.cameras.values()):
            for day in sorted(runtime.index.days):
                if day < oldest_kept:
                    await self.drop_day(runtime, day, why="age")
                    dropped += 1
        if node.retention_bytes:
            yesterday = day_name(datetime.fromtimestamp(self.clock() - 86_400, UTC))
            while self.stored_bytes() > node.retention_bytes:
                candidates = [
                    (day, runtime.index.key, runtime)
                    for runtime in self.cameras.values()
                    for day in runtime.index.days
                    if day < yesterday
                ]
                if not candidates:
                    self._warn(
                        "budget",
                        "retention_budget_exceeded",
                        budget=node.retention_bytes,
                        detail="today's and yesterday's segments alone exceed retention_bytes",
                    )
                    break
                day, _, runtime = min(candidates, key=lambda c: (c[0], c[1]))
                await self.drop_day(runtime, day, why="bytes")
                dropped += 1
        return dropped

    async def drop_day(self, runtime: CameraRuntime, day: str, *, why: str) -> None:
        index = runtime.index
        async with runtime.lock:
            segments = await asyncio.to_thread(self.store.drop_day, index.factory, index.device, day)
            size = index.days[day].bytes if day in index.days else 0
            index.forget_day(day, [s.seq for s in segments])
        self.day_writes.pop((index.factory, index.device, day), None)
        self.metrics.retention_deleted.inc()
        log.info(
            "day_deleted", extra=kv(camera=index.key, day=day, reason=why, segments=len(segments), bytes=size)
        )
        if self.config.node.pin:
            for segment in segments:
                with contextlib.suppress(DaemonError):
                    await self.kubo.pin_rm(segment.cid)
                self.unpinned.discard(segment.cid)

    # --- status --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        cameras = {}
        for runtime in self.cameras.values():
            index = runtime.index
            newest = index.recent[max(index.recent)] if index.recent else None
            cameras[index.key] = {
                "segments": len(index.seqs),
                "bytes": index.bytes,
                "highest_seq": index.seqs.highest,
                "last_start": announce.format_start(newest.start) if newest else None,
                "missing_below_highest": sum(
                    b - a + 1 for a, b in index.seqs.missing(index.seqs.lowest or 0, index.seqs.highest or -1)
                ),
                "live_media_sequence": index.live_state.media_sequence if index.live_state else None,
                "days": sorted(index.days),
            }
        degraded = not self.subscribed or self.catalog_ok is False
        return {
            "status": "degraded" if degraded else "ok",
            "subscribed": self.subscribed,
            "catalog_ok": self.catalog_ok,
            "queue": {
                "live": self.queue.live.qsize(),
                "repair": self.queue.repair.qsize(),
                "inflight": len(self.inflight),
            },
            "stored": dict(self.stats),
            "rejects": self.rejects.snapshot(),
            "last_catchup": self.last_catchup,
            "unpinned": len(self.unpinned),
            "cameras": cameras,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def admin_app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(self.health())

        async def metrics(_: web.Request) -> web.Response:
            self._gauge_queue()
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def drop_announcements(request: web.Request) -> web.Response:
            try:
                body = await request.json()
                seconds = float(body["seconds"])
                if not 0 <= seconds <= 3600:
                    raise ValueError("seconds must be between 0 and 3600")
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": f"expected {{'seconds': 0..3600}}: {exc}"}, status=400)
            self.drop_until = time.monotonic() + seconds
            log.warning("fault_injected", extra=kv(fault="drop_announcements", seconds=seconds))
            return web.json_response({"dropping_for_s": seconds})

        app = web.Application(client_max_size=4096)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        if self.config.node.fault_injection:
            app.router.add_post("/faults/drop-announcements", drop_announcements)
        return app

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        node = self.config.node
        node.store_dir.mkdir(parents=True, exist_ok=True)
        host, _, port = node.admin_listen.rpartition(":")
        runner = web.AppRunner(self.admin_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port)).start()
            await self.load()
            log.info(
                "mirror_started",
                extra=kv(
                    store=str(node.store_dir),
                    topic=node.topic,
                    producers=len(self.config.producers),
                    admin=f"http://{node.admin_listen}",
                ),
            )
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.subscribe(), name="subscribe"),
                    group.create_task(self.catchup_loop(), name="catch-up"),
                    group.create_task(self.day_writer(), name="day playlists"),
                    group.create_task(self.housekeeping_loop(), name="housekeeping"),
                    group.create_task(keep_peered(node.kubo_api), name="peering"),
                ]
                tasks += [
                    group.create_task(self.fetch_worker(), name=f"fetch {n}")
                    for n in range(node.fetch_concurrency)
                ]
                await stop.wait()
                log.info("mirror_stopping")
                for task in tasks:
                    task.cancel()
        finally:
            await runner.cleanup()
            await self.kubo.close()
            await self.catalog.close()
            log.info("mirror_stopped")
