"""Period close: each camera's closed periods become anchor records in the catalog.

A period (``[anchoring] period_s``, tiling each UTC day) closes once
``close_delay_s`` has passed after its end and none of its segments still waits
in the outbox, so its root covers every segment it will ever have. The root of
the period's segment CIDs and the CID of the day's MFS directory at that moment
are recorded once in ``anchors``; ``camswarm anchor`` puts the root on chain.
Closing never touches recording: it only reads the outbox and the catalog, and
an outage of the catalog or Kubo only delays it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from node import announce
from node.anchors import anchor_record, closable, next_cursor
from node.catalog import Catalog
from node.errors import DaemonError
from node.kubo import KuboClient
from node.layout import day_dir
from node.logs import RateLimiter, kv
from node.merkle import period_bounds
from producer.config import AnchoringSettings, CameraConfig
from producer.outbox import AsyncOutbox

log = logging.getLogger("camswarm.producer.periods")


class PeriodCloser:
    def __init__(
        self,
        settings: AnchoringSettings,
        outbox: AsyncOutbox,
        kubo: KuboClient,
        catalog: Catalog,
        producer_id: str,
        *,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._kubo = kubo
        self._catalog = catalog
        self._producer_id = producer_id
        self._poll_s = poll_s
        self._clock = clock
        self._cursor: dict[str, datetime | None] = {}
        self._limiter = RateLimiter(60.0)
        self.closed = 0

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run(self, cameras: list[CameraConfig]) -> None:
        while True:
            for camera in cameras:
                try:
                    await self.close_due(camera)
                except (DaemonError, OSError, TimeoutError) as exc:
                    allowed, suppressed = self._limiter.allow(camera.key)
                    if allowed:
                        log.warning(
                            "period_close_delayed",
                            extra=kv(camera=camera.key, suppressed=suppressed, error=exc),
                        )
            await asyncio.sleep(self._poll_s)

    async def _start_cursor(self, camera: CameraConfig) -> datetime | None:
        latest = await self._catalog.latest_anchor(camera.factory, camera.device)
        if latest is not None:
            return latest["period_end"].astimezone(UTC)  # type: ignore[no-any-return]
        first = await self._catalog.first_segment(camera.factory, camera.device)
        if first is None:
            return None
        return period_bounds(first["start"], self._settings.period_s)[0]

    async def _oldest_pending(self, camera: CameraConfig) -> datetime | None:
        head = await self._outbox.call(self._outbox.sync.head, camera.key)
        return None if head is None else announce.parse_start(head.start)

    async def close_due(self, camera: CameraConfig) -> int:
        """Record every period of ``camera`` that can close now; returns how many were recorded."""
        period_s = self._settings.period_s
        cursor = self._cursor.get(camera.key) or await self._start_cursor(camera)
        recorded = 0
        while cursor is not None:
            self._cursor[camera.key] = cursor
            end = cursor + timedelta(seconds=period_s)
            now = self._now()
            pending = await self._oldest_pending(camera)
            if not closable(end, now, self._settings.close_delay_s, pending):
                break
            docs = await self._catalog.segments_between(camera.factory, camera.device, cursor, end)
            if docs:
                await self._record(camera, (cursor, end), docs)
                recorded += 1
                cursor = end
                continue
            later = await self._catalog.first_segment_since(camera.factory, camera.device, end)
            settled = now - timedelta(seconds=self._settings.close_delay_s)
            cursor = next_cursor(
                end,
                period_s,
                next_recorded=None if later is None else later["start"],
                oldest_pending=pending,
                settled_until=settled,
            )
        return recorded

    async def _record(
        self, camera: CameraConfig, period: tuple[datetime, datetime], docs: list[dict[str, Any]]
    ) -> None:
        directory = day_dir(camera.factory, camera.device, period[0])
        stat = await self._kubo.files_stat(directory)
        record = anchor_record(
            camera.factory,
            camera.device,
            period,
            docs,
            day_dir=directory,
            day_dir_cid=stat.cid,
            producer=self._producer_id,
            created_at=self._now(),
        )
        if await self._catalog.put_anchor(record):
            self.closed += 1
            log.info(
                "period_closed",
                extra=kv(
                    camera=camera.key,
                    period=record["_id"].rsplit("/", 1)[1],
                    segments=record["count"],
                    root=record["root"][:16],
                    day_dir_cid=stat.cid,
                ),
            )
