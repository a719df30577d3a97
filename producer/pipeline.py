"""The outbox steps: ipfs add -> cluster pin -> MFS link -> catalog upsert -> signed announcement.

An encrypting camera's segment is encrypted in the ``add`` step (its key and IV
were fixed when it was journaled), so only ciphertext reaches IPFS, the cluster
and the mirrors; the local file stays plaintext. The ``catalog`` step records
the segment's wrapped key in the ``keys`` collection before the segment itself,
so every segment a mirror or gateway can find has its key recorded.

One worker per camera takes the camera's oldest unfinished segment, runs its
next step and commits the result before the next, so segments of a camera are
announced in seq order. A failed step is retried with backoff; while a daemon
is down the worker waits and recording goes on, the backlog growing in the
outbox. Every step is idempotent: adding the same bytes gives the same CID,
pinning and linking again change nothing, the catalog upsert never overwrites,
and a repeated announcement is recognised by mirrors by (producer, seq).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import announce, segcrypt
from node.catalog import Catalog
from node.cluster import ClusterClient, Redialer
from node.errors import DaemonError
from node.kubo import KuboClient
from node.layout import mfs_path, published_name
from node.logs import RateLimiter, kv
from producer.config import CameraConfig, ProducerConfig
from producer.media import MediaInfo, ProbeError, probe
from producer.metrics import ProducerMetrics
from producer.outbox import STEPS, AsyncOutbox, Entry, SegmentKey

log = logging.getLogger("camswarm.producer.pipeline")

# Errors a step may hit that are worth retrying; anything else is a bug and stops the producer.
RETRYABLE = (DaemonError, OSError, TimeoutError)
# The least time between two announcements from this producer: at most 100 a second, enough
# for 200 cameras cutting 2 s segments.
PUBLISH_SPACING_S = 0.010


def pin_expiry(start: datetime, retention_days: int) -> datetime:
    return start + timedelta(days=retention_days)


@dataclass(frozen=True)
class StepResult:
    """What a step learnt that the outbox keeps: the CID, and an encrypted segment's (size, sha256)."""

    cid: str | None = None
    cipher: tuple[int, str] | None = None


def encrypt_file(path: Path, key: bytes, iv: bytes) -> tuple[bytes, str]:
    """The segment's ciphertext and its sha256 (blocking: run it in a thread)."""
    ciphertext = segcrypt.encrypt(path.read_bytes(), key, iv)
    return ciphertext, hashlib.sha256(ciphertext).hexdigest()


def key_document(camera: CameraConfig, key: SegmentKey) -> dict[str, Any]:
    """The catalog's ``keys`` document of a content key (wrapped: the catalog never sees it in clear)."""
    return {
        "_id": segcrypt.key_identity(camera.factory, camera.device, key.key_id),
        "factory": camera.factory,
        "device": camera.device,
        "key_id": key.key_id,
        "wrapped": key.wrapped,
        "iv": key.iv,
        "first_seq": key.first_seq,
        "session": key.session,
        "created_at": datetime.fromtimestamp(key.created_at, UTC),
    }


def build_announcement(
    entry: Entry, camera: CameraConfig, producer_id: str, key: SegmentKey | None = None
) -> announce.Announcement:
    if entry.cid is None:
        raise ValueError(f"entry {entry.id} has no CID yet")
    if (key is None) != (entry.key_id is None) or (key is not None and key.key_id != entry.key_id):
        raise ValueError(f"entry {entry.id} has key {entry.key_id}, given {key and key.key_id}")
    start = announce.parse_start(entry.start)
    return announce.Announcement(
        v=announce.VERSION,
        producer=producer_id,
        factory=camera.factory,
        device=camera.device,
        session=entry.session,
        seq=entry.seq,
        cid=entry.cid,
        filename=published_name(entry.seq, start),
        start=entry.start,
        duration=entry.duration,
        size=entry.published_size,
        key_id=None if key is None else key.key_id,
        iv=None if key is None else key.iv,
    )


def segment_document(
    signed: announce.Announcement, entry: Entry, media: MediaInfo | None, created_at: datetime
) -> dict[str, Any]:
    """The catalog's segment document: the announcement's fields (start as a date) plus more."""
    doc: dict[str, Any] = dict(signed.unsigned_fields())
    start = signed.start_time
    doc.update(
        sig=signed.sig,
        start=start,
        end=start + timedelta(seconds=signed.duration),
        sha256=entry.published_sha256,
        created_at=created_at,
    )
    if media is not None:
        doc.update(
            container=media.container,
            codec=media.codec,
            width=media.width,
            height=media.height,
            bitrate=media.bitrate,
            audio_codec=media.audio_codec,
        )
    return doc


class Publisher:
    """Runs the outbox steps for every camera."""

    def __init__(
        self,
        config: ProducerConfig,
        outbox: AsyncOutbox,
        kubo: KuboClient,
        cluster: ClusterClient,
        catalog: Catalog,
        key: Ed25519PrivateKey,
        metrics: ProducerMetrics,
        *,
        master_key: bytes | None = None,
        camera_state: Callable[[str], str] = lambda _: "unknown",
        ffprobe: str = "ffprobe",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._kubo = kubo
        self._cluster = cluster
        self._redial = Redialer(cluster)
        self._catalog = catalog
        self._key = key
        self._master_key = master_key
        self.producer_id = announce.key_id(key.public_key())
        self._metrics = metrics
        self._camera_state = camera_state
        self._ffprobe = ffprobe
        self._clock = clock
        self._wake: dict[str, asyncio.Event] = {c.key: asyncio.Event() for c in config.cameras}
        self._limiter = RateLimiter(30.0)
        self._indexes_ready = False
        self._publish_lock = asyncio.Lock()
        self._last_publish = float("-inf")

    def notify(self, camera_key: str) -> None:
        """A segment was journaled for this camera."""
        self._wake[camera_key].set()

    async def run_camera(self, camera: CameraConfig) -> None:
        wake = self._wake[camera.key]
        while True:
            wake.clear()
            entry = await self._outbox.call(self._outbox.sync.head, camera.key)
            if entry is None:
                await wake.wait()
                continue
            delay = entry.not_before - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self._advance(camera, entry)

    async def _advance(self, camera: CameraConfig, entry: Entry) -> None:
        step = entry.step
        assert step is not None
        began = time.monotonic()
        try:
            result = await self._run_step(step, camera, entry)
        except RETRYABLE as exc:
            failed = await self._outbox.call(self._outbox.sync.fail, entry.id, f"{step}: {exc}")
            self._metrics.step_failures.labels(step).inc()
            allowed, suppressed = self._limiter.allow(f"{camera.key}/{step}")
            if allowed:
                log.warning(
                    "step_failed",
                    extra=kv(
                        camera=camera.key,
                        seq=entry.seq,
                        step=step,
                        attempts=failed.attempts,
                        retry_in_s=round(failed.not_before - self._clock(), 2),
                        suppressed=suppressed,
                        error=exc,
                    ),
                )
            return
        self._metrics.step_seconds.labels(step).observe(time.monotonic() - began)
        done = await self._outbox.call(
            self._outbox.sync.complete, entry.id, step, cid=result.cid, cipher=result.cipher
        )
        if entry.attempts:
            log.info(
                "step_recovered", extra=kv(camera=camera.key, seq=entry.seq, step=step, after=entry.attempts)
            )
        if done.step is None:
            self._metrics.announced.labels(camera.key).inc()
            self._metrics.announce_latency.observe(max(0.0, self._clock() - entry.created_at))
            log.debug("segment_announced", extra=kv(camera=camera.key, seq=entry.seq, cid=done.cid))

    async def _pin(self, camera: CameraConfig, entry: Entry, cid: str, start: datetime) -> None:
        try:
            allocation = await self._cluster.pin(
                cid,
                replication_min=camera.replication_min,
                replication_max=camera.replication_max,
                name=f"{camera.key}/{entry.seq}",
                metadata={
                    "factory": camera.factory,
                    "device": camera.device,
                    "seq": str(entry.seq),
                    "start": entry.start,
                },
                expire_at=pin_expiry(start, camera.retention_days),
            )
        except DaemonError as exc:
            dialled = await self._redial.failed(exc)
            if dialled:
                log.info("cluster_peers_redialled", extra=kv(camera=camera.key, seq=entry.seq, peers=dialled))
            raise
        self._redial.pinned(allocation)

    async def _segment_key(self, camera: CameraConfig, entry: Entry) -> SegmentKey | None:
        if entry.key_id is None:
            return None
        return await self._outbox.call(self._outbox.sync.key, camera.key, entry.key_id)

    def _content_key(self, camera: CameraConfig, key: SegmentKey) -> bytes:
        if self._master_key is None:  # config validation requires it for an encrypting camera
            raise AssertionError(f"{camera.key} has encrypted segments but no master key is loaded")
        identity = segcrypt.key_identity(camera.factory, camera.device, key.key_id)
        return segcrypt.unwrap(key.wrapped, self._master_key, identity)

    async def _add(self, camera: CameraConfig, entry: Entry) -> StepResult:
        key = await self._segment_key(camera, entry)
        if key is None:
            added = await self._kubo.add(Path(entry.path), filename=entry.filename, pin=True)
            return StepResult(cid=added.cid)
        content_key = self._content_key(camera, key)
        ciphertext, digest = await asyncio.to_thread(
            encrypt_file, Path(entry.path), content_key, bytes.fromhex(key.iv)
        )
        added = await self._kubo.add(ciphertext, filename=entry.filename, pin=True)
        return StepResult(cid=added.cid, cipher=(len(ciphertext), digest))

    async def _run_step(self, step: str, camera: CameraConfig, entry: Entry) -> StepResult:
        if step == "add":
            return await self._add(camera, entry)
        assert entry.cid is not None
        start = announce.parse_start(entry.start)
        if step == "pin":
            await self._pin(camera, entry, entry.cid, start)
        elif step == "link":
            path = mfs_path(camera.factory, camera.device, start, published_name(entry.seq, start))
            await self._kubo.files_cp(f"/ipfs/{entry.cid}", path, parents=True, force=True)
        elif step == "catalog":
            await self._record(camera, entry)
        elif step == "announce":
            key = await self._segment_key(camera, entry)
            signed = announce.sign(build_announcement(entry, camera, self.producer_id, key), self._key)
            # Kubo ignores a message whose seqno is not above the highest it has seen from the
            # same peer. Concurrent publishes could reach a peer in either order, so there is one
            # publish at a time; and a receiver validates on several workers at once, so two
            # messages arriving in the same instant can be checked out of order there too. The
            # spacing keeps back-to-back announcements apart (measured: 9 of 900 lost without
            # it, 0 of 900 with 5 ms; 10 ms is used, docs/decisions.md).
            async with self._publish_lock:
                wait = self._last_publish + PUBLISH_SPACING_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    await self._kubo.pubsub_pub(self._config.node.topic, announce.encode(signed))
                finally:
                    self._last_publish = time.monotonic()
        else:  # pragma: no cover - STEPS is fixed
            raise AssertionError(f"unknown step {step}; steps are {STEPS}")
        return StepResult()

    async def _record(self, camera: CameraConfig, entry: Entry) -> None:
        if not self._indexes_ready:
            await self._catalog.ensure_indexes()
            self._indexes_ready = True
        media = await self.session_media(camera, entry.session, Path(entry.path))
        key = await self._segment_key(camera, entry)
        if key is not None:  # the key before the segment: nothing listed lacks its key
            await self._catalog.upsert_key(key_document(camera, key))
        signed = announce.sign(build_announcement(entry, camera, self.producer_id, key), self._key)
        doc = segment_document(signed, entry, media, datetime.fromtimestamp(self._clock(), UTC))
        await self._catalog.upsert_segment(doc)
        await self._catalog.set_camera_state(
            camera.factory,
            camera.device,
            {
                "state": self._camera_state(camera.key),
                "last_seq": entry.seq,
                "last_start": doc["start"],
                "last_end": doc["end"],
                "last_cid": entry.cid,
                "session": entry.session,
                "producer": self.producer_id,
                "updated_at": doc["created_at"],
            },
        )

    async def session_media(self, camera: CameraConfig, session: str, sample: Path) -> MediaInfo | None:
        """The session's stream description, probed from ``sample`` the first time it is needed."""
        text = await self._outbox.call(self._outbox.sync.session_media, camera.key, session)
        if text is not None:
            return MediaInfo.from_json(text)
        if not await asyncio.to_thread(sample.exists):
            return None  # the local copy is gone; the catalog entry simply lacks codec details
        try:
            media = await probe(sample, ffprobe=self._ffprobe)
        except ProbeError as exc:
            log.error(
                "probe_failed", extra=kv(camera=camera.key, session=session, file=sample.name, error=exc)
            )
            return None
        await self._outbox.call(self._outbox.sync.set_session_media, camera.key, session, media.to_json())
        return media
