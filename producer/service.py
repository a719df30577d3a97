"""``camswarm producer``: record every configured camera and publish its segments.

Tasks, all on one event loop:
- one recorder per camera (ffmpeg; segments journaled into the outbox);
- one outbox worker per camera (add, pin, link, catalog, announce);
- housekeeping: local deletion after retention, disk space (gauges are read at scrape time);
- the admin server: ``GET /healthz`` (JSON) and ``GET /metrics`` (Prometheus).

On SIGTERM the recorders stop first (ffmpeg closes its current segment and it
is journaled), then everything else; unfinished work stays in the outbox and
is resumed, in order, by the next start.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node import keys, segcrypt
from node.announce import format_start
from node.catalog import Catalog
from node.cluster import ClusterClient
from node.config import ConfigError
from node.files import hash_file
from node.kubo import KuboClient
from node.logs import RateLimiter, kv
from node.peering import keep_peered
from producer.config import CameraConfig, ProducerConfig
from producer.media import ffprobe_for
from producer.metrics import ProducerMetrics
from producer.outbox import AsyncOutbox, KeyPolicy, NewKey, NewSegment, Outbox
from producer.periods import PeriodCloser
from producer.pipeline import Publisher
from producer.recorder import CameraRecorder, JournalError, recover_sessions
from producer.segments import ListedSegment, clock_lead
from producer.watch import PlaylistWatcher

log = logging.getLogger("camswarm.producer")

HOUSEKEEPING_INTERVAL = 5.0
DELETE_INTERVAL = 30.0
# A camera whose oldest unannounced segment is older than this makes /healthz "degraded".
BACKLOG_DEGRADED_S = 60.0


class Producer:
    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
        node = config.node
        self.sessions_dir = node.state_dir / "sessions"
        self.metrics = ProducerMetrics()
        self._limiter = RateLimiter(60.0)
        self.disk_free: int | None = None
        self.disk_low = False
        self.started = time.time()
        node.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key, created = keys.load_or_create(node.key_path)
        if created:
            log.info("producer_key_created", extra=kv(path=node.key_path))
        self.master_key = self._load_master_key()
        self.key_policies = {
            c.key: KeyPolicy(c.key_rotation_segments, self._key_maker(c))
            for c in config.cameras
            if c.encrypt and self.master_key is not None
        }
        self.outbox = AsyncOutbox(Outbox(node.state_dir / "outbox.sqlite3"))
        self.kubo = KuboClient(node.kubo_api, timeout=60)
        self.cluster = ClusterClient(node.cluster_api, timeout=30)
        self.catalog = Catalog(node.catalog, node.catalog_db)
        self.watcher = PlaylistWatcher()
        self.recorders = {
            c.key: CameraRecorder(
                c,
                self.sessions_dir,
                self._journal,
                self.watcher,
                ffmpeg=node.ffmpeg,
                on_restart=self.metrics.restarts.labels(c.key).inc,
            )
            for c in config.cameras
        }
        self.publisher = Publisher(
            config,
            self.outbox,
            self.kubo,
            self.cluster,
            self.catalog,
            self.key,
            self.metrics,
            master_key=self.master_key,
            camera_state=lambda key: self.recorders[key].state,
            ffprobe=ffprobe_for(node.ffmpeg),
        )
        self.periods = PeriodCloser(
            config.anchoring, self.outbox, self.kubo, self.catalog, self.publisher.producer_id
        )

    def _load_master_key(self) -> bytes | None:
        """The master key when a camera encrypts; a missing or unusable file refuses to start."""
        node = self.config.node
        if not any(c.encrypt for c in self.config.cameras):
            return None
        try:
            master = keys.load_master_key(Path(node.master_key_file).expanduser())
        except keys.KeyFileError as exc:
            raise ConfigError("node.master_key_file", str(exc)) from None
        encrypting = [c.key for c in self.config.cameras if c.encrypt]
        log.info(
            "segment_encryption", extra=kv(cameras=",".join(encrypting), master_key=node.master_key_file)
        )
        return master

    def _key_maker(self, camera: CameraConfig) -> Callable[[], NewKey]:
        master = self.master_key
        assert master is not None

        def new() -> NewKey:
            key_id = segcrypt.new_key_id()
            identity = segcrypt.key_identity(camera.factory, camera.device, key_id)
            wrapped = segcrypt.wrap(segcrypt.new_content_key(), master, identity)
            return NewKey(key_id=key_id, wrapped=wrapped, iv=segcrypt.new_iv().hex())

        return new

    # --- segments ---------------------------------------------------------------------

    async def _known(self, camera: CameraConfig, session: str, filename: str) -> bool:
        return await self.outbox.call(self.outbox.sync.known, camera.key, session, filename)

    async def _journal(
        self, camera: CameraConfig, session: str, session_dir: Path, segment: ListedSegment
    ) -> None:
        """Journal one segment ffmpeg listed (idempotent); then the camera's worker takes it."""
        box = self.outbox
        if await box.call(box.sync.known, camera.key, session, segment.filename):
            return
        path = session_dir / segment.filename
        try:
            size, digest = await asyncio.to_thread(hash_file, path)
        except FileNotFoundError:
            log.error("segment_missing", extra=kv(camera=camera.key, session=session, file=segment.filename))
            return
        try:
            entry = await box.call(
                box.sync.journal,
                NewSegment(
                    camera=camera.key,
                    session=session,
                    filename=segment.filename,
                    path=str(path),
                    start=format_start(segment.start),
                    duration=segment.duration,
                    size=size,
                    sha256=digest,
                ),
                self.key_policies.get(camera.key),
                lead=clock_lead(segment),
            )
        except sqlite3.Error as exc:  # e.g. "database or disk is full": the transaction rolled back
            allowed, suppressed = self._limiter.allow("journal_failed")
            if allowed:
                log.error(
                    "journal_failed",
                    extra=kv(
                        camera=camera.key,
                        session=session,
                        file=segment.filename,
                        error=exc,
                        suppressed=suppressed,
                    ),
                )
            raise JournalError(str(exc)) from exc
        self.metrics.recorded.labels(camera.key).inc()
        self.publisher.notify(camera.key)
        log.debug("segment_journaled", extra=kv(camera=camera.key, seq=entry.seq, session=session, size=size))

    # --- housekeeping -------------------------------------------------------------------

    def check_disk(self) -> None:
        free = shutil.disk_usage(self.config.node.state_dir).free
        self.disk_free = free
        low = free < self.config.node.disk_min_free_mb * (1 << 20)
        self.metrics.disk_free.set(free)
        self.metrics.disk_low.set(1 if low else 0)
        if low:
            allowed, suppressed = self._limiter.allow("disk_low")
            if allowed:
                log.error(
                    "disk_low",
                    extra=kv(
                        path=self.config.node.state_dir,
                        free_mb=free >> 20,
                        min_free_mb=self.config.node.disk_min_free_mb,
                        action="deleting announced local files early; recording continues",
                        suppressed=suppressed,
                    ),
                )
        elif self.disk_low:
            log.info("disk_ok", extra=kv(free_mb=free >> 20))
        self.disk_low = low

    async def delete_local(self) -> int:
        """Remove local files announced longer ago than the local retention (any, if disk is low)."""
        retention = self.config.node.local_retention_hours * 3600
        cutoff = time.time() if self.disk_low else time.time() - retention
        box = self.outbox
        removed = 0
        for entry in await box.call(box.sync.deletable, cutoff):
            await asyncio.to_thread(Path(entry.path).unlink, missing_ok=True)
            await box.call(box.sync.mark_deleted, entry.id)
            removed += 1
        if removed:
            self.metrics.local_deleted.inc(removed)
            log.info("local_files_deleted", extra=kv(count=removed))
        return removed

    async def update_gauges(self) -> dict[str, Any]:
        box = self.outbox
        cameras: dict[str, Any] = {}
        now = time.monotonic()
        for key, recorder in self.recorders.items():
            depth, oldest = await box.call(box.sync.depth, key)
            self.metrics.outbox_depth.labels(key).set(depth)
            self.metrics.camera_up.labels(key).set(1 if recorder.state == "up" else 0)
            last = recorder.last_segment_at
            cameras[key] = {
                "state": recorder.state,
                "session": recorder.session,
                "restarts": recorder.restarts,
                "last_segment_age_s": round(now - last, 1) if last is not None else None,
                "outbox_depth": depth,
                "outbox_oldest_age_s": round(oldest, 1) if oldest is not None else None,
            }
        depth, oldest = await box.call(box.sync.depth)
        self.metrics.outbox_oldest.set(oldest or 0.0)
        return {"cameras": cameras, "outbox": {"depth": depth, "oldest_age_s": round(oldest or 0.0, 1)}}

    async def housekeeping(self) -> None:
        last_delete = 0.0
        while True:
            try:
                await asyncio.to_thread(self.check_disk)
                if time.monotonic() - last_delete >= DELETE_INTERVAL or self.disk_low:
                    last_delete = time.monotonic()
                    await self.delete_local()
            except OSError as exc:
                allowed, suppressed = self._limiter.allow("housekeeping")
                if allowed:
                    log.error("housekeeping_failed", extra=kv(error=exc, suppressed=suppressed))
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    # --- admin server ---------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        report = await self.update_gauges()
        oldest = report["outbox"]["oldest_age_s"]
        degraded = (
            self.disk_low
            or oldest > BACKLOG_DEGRADED_S
            or any(c["state"] == "down" for c in report["cameras"].values())
        )
        report.update(
            status="degraded" if degraded else "ok",
            producer=self.publisher.producer_id,
            anchoring={
                "enabled": self.config.anchoring.enabled,
                "period_s": self.config.anchoring.period_s,
                "periods_closed": self.periods.closed,
            },
            uptime_s=round(time.time() - self.started, 1),
            disk={"free_bytes": self.disk_free, "low": self.disk_low},
        )
        return report

    def admin_app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(await self.health())

        async def metrics(_: web.Request) -> web.Response:
            await self.update_gauges()
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        return app

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        host, _, port = self.config.node.admin_listen.rpartition(":")
        runner = web.AppRunner(self.admin_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host.strip("[]"), int(port)).start()
            log.info(
                "producer_started",
                extra=kv(
                    producer=self.publisher.producer_id,
                    cameras=len(self.recorders),
                    admin=f"http://{self.config.node.admin_listen}",
                ),
            )
            await self._recover()
            await self._record(stop)
        finally:
            await runner.cleanup()
            self.watcher.close()
            await self.kubo.close()
            await self.cluster.close()
            await self.catalog.close()
            await self.outbox.close()
            log.info("producer_stopped")

    async def _recover(self) -> None:
        found = await asyncio.gather(
            *(
                recover_sessions(
                    c, self.sessions_dir, self._journal, self._known, ffmpeg=self.config.node.ffmpeg
                )
                for c in self.config.cameras
            )
        )
        depth, oldest = await self.outbox.call(self.outbox.sync.depth)
        log.info(
            "outbox_resumed",
            extra=kv(recovered_segments=sum(found), pending=depth, oldest_age_s=round(oldest or 0.0, 1)),
        )

    async def _record(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            recording = [group.create_task(r.run(), name=f"record {k}") for k, r in self.recorders.items()]
            others = [
                group.create_task(self.publisher.run_camera(c), name=f"publish {c.key}")
                for c in self.config.cameras
            ]
            others.append(group.create_task(self.housekeeping(), name="housekeeping"))
            others.append(group.create_task(keep_peered(self.config.node.kubo_api), name="peering"))
            if self.config.anchoring.enabled:
                others.append(group.create_task(self.periods.run(self.config.cameras), name="periods"))
            await stop.wait()
            log.info("producer_stopping")
            # Recorders first: ffmpeg closes its current segment and it gets journaled.
            for task in recording:
                task.cancel()
            await asyncio.wait(recording)
            for task in others:
                task.cancel()
