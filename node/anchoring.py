"""``camswarm anchor``: put each closed period's root on chain, and index the chain into the catalog.

The producer records one ``anchors`` document per camera and closed period
(producer/periods.py). This service sends each to the FootageRegistry contract,
one transaction per camera and period, waits for its receipt and notes the
transaction in the record. It runs apart from recording: a chain that is down or
slow only delays anchors, which are sent, in order, once it answers again.
Submitting is idempotent (node/chain.py reads before it sends, and the contract
refuses to anchor a period twice), so a crash between sending and noting a
transaction costs nothing.

``camswarm anchor index`` (and the service, every ``index_interval_s``) copies the
contract's ``Anchored`` events into ``chain_anchors`` so the gateway can show what
is anchored without asking the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.anchors import anchor_id, unix
from node.catalog import Catalog
from node.chain import AnchorConflict, AnchorRecord, ChainError, Registry
from node.config import HOSTPORT, NAME, ConfigError, load, setting
from node.errors import DaemonError
from node.keys import KeyFileError, read_secret_text
from node.logs import RateLimiter, kv

log = logging.getLogger("camswarm.anchor")

ADDRESS = r"0x[0-9a-fA-F]{40}"
PRIVATE_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class AnchorSettings:
    # The FootageRegistry's address (`camswarm devnet up` deploys one on its local chain).
    contract: str = setting(pattern=ADDRESS)
    catalog: str = setting("mongodb://127.0.0.1:27017/", pattern=r"mongodb(\+srv)?://\S+")
    catalog_db: str = setting("camswarm", pattern=NAME)
    # Any Ethereum JSON-RPC endpoint. It may carry an API key, so it is never logged.
    rpc_url: str = setting("http://127.0.0.1:8545", pattern=r"https?://\S+")
    # The submitting account's private key, hex, in an owner-only file (`anchor run` only).
    key_file: Path = setting(Path("/etc/camswarm/anchor.key"))
    # The producer's [anchoring] period_s: how `verify` tiles a range into periods.
    period_s: int = setting(3600, min=60, max=86_400)
    # Kubo on the verifying host: `verify` recomputes CIDs with it (add --only-hash).
    kubo_api: str = setting("http://127.0.0.1:5001", pattern=r"https?://[^\s/]+")
    poll_s: float = setting(5.0, min=0.1, max=3600)
    index_interval_s: float = setting(15.0, min=0.1, max=86_400)
    batch: int = setting(50, min=1, max=10_000)
    receipt_timeout_s: float = setting(120.0, min=1, max=3600)
    start_block: int = setting(0, min=0)  # the contract's deployment block: indexing starts here
    admin_listen: str = setting("", pattern=f"({HOSTPORT})?")

    def __post_init__(self) -> None:
        if 86_400 % self.period_s:
            raise ConfigError("period_s", f"must divide a day (86400 s) evenly, got {self.period_s}")


@dataclass(frozen=True)
class AnchorConfig:
    anchor: AnchorSettings = setting()


def load_config(path: Path) -> AnchorConfig:
    return load(AnchorConfig, path)


def read_private_key(path: Path) -> str:
    """The submitter's private key from an owner-only file; KeyFileError says what is wrong."""
    text = read_secret_text(path, "anchor key").strip()
    if not PRIVATE_KEY.fullmatch(text):
        raise KeyFileError(f"{path} does not hold a hex private key (64 hex digits)")
    return text if text.startswith("0x") else "0x" + text


def _moment(unix_seconds: int) -> datetime | None:
    return datetime.fromtimestamp(unix_seconds, UTC) if unix_seconds else None


def _chain_fields(record: AnchorRecord, contract: str, chain_id: int) -> dict[str, Any]:
    return {
        "factory": record.factory,
        "device": record.device,
        "period_start": datetime.fromtimestamp(record.period_start, UTC),
        "period_s": record.period_seconds,
        "root": record.root.hex(),
        "tx_hash": record.tx_hash,
        "block": record.block_number,
        "submitter": record.submitter,
        "anchored_at": _moment(record.anchored_at),
        "contract": contract,
        "chain_id": chain_id,
    }


class Anchorer:
    """Sends unsent anchor records, oldest first, and indexes the contract's events."""

    def __init__(
        self,
        settings: AnchorSettings,
        catalog: Catalog,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._catalog = catalog
        self._registry = registry
        self._clock = clock
        self._limiter = RateLimiter(60.0)
        self.sent = 0
        self.conflicts = 0
        self.indexed = 0
        self.last_error: str | None = None

    async def submit_pending(self) -> int:
        """Send every unsent record (in batches); returns how many were anchored by this call."""
        done = 0
        while True:
            records = await self._catalog.unsent_anchors(self.settings.batch)
            if not records:
                return done
            for record in records:
                await self._submit(record)
                done += 1

    async def _submit(self, record: dict[str, Any]) -> None:
        began = time.monotonic()
        try:
            result = await self._registry.submit(
                record["factory"],
                record["device"],
                unix(record["period_start"]),
                int(record["period_s"]),
                bytes.fromhex(record["root"]),
            )
        except AnchorConflict as exc:
            # The chain holds another root for this period: never overwritten, loudly reported.
            self.conflicts += 1
            log.error("anchor_conflict", extra=kv(anchor=record["_id"], error=exc))
            await self._catalog.set_anchor_chain(
                record["_id"], {"status": "conflict", "error": str(exc), "checked_at": self._now()}
            )
            return
        await self._catalog.set_anchor_chain(
            record["_id"],
            {
                "status": "anchored",
                "tx_hash": result.tx_hash,
                "block": result.block_number,
                "contract": self.settings.contract,
                "anchored_at": _moment(result.anchored_at),
            },
        )
        self.sent += 1
        log.info(
            "anchored",
            extra=kv(
                anchor=record["_id"],
                root=record["root"][:16],
                segments=record.get("count"),
                tx=result.tx_hash,
                block=result.block_number,
                seconds=round(time.monotonic() - began, 2),
            ),
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def index(self) -> int:
        """Copy new ``Anchored`` events into ``chain_anchors``; returns how many were copied."""
        contract = self.settings.contract
        start = await self._catalog.index_cursor(contract)
        first = self.settings.start_block if start is None else start
        head = await self._registry.block_number()
        if first > head:
            return 0
        events = await self._registry.events(first, head)
        chain_id = await self._registry.chain_id() if events else 0
        for event in events:
            moment = datetime.fromtimestamp(event.period_start, UTC)
            await self._catalog.put_chain_anchor(
                anchor_id(event.factory, event.device, moment), _chain_fields(event, contract, chain_id)
            )
        await self._catalog.set_index_cursor(contract, head + 1)
        self.indexed += len(events)
        if events:
            log.info("chain_indexed", extra=kv(events=len(events), blocks=f"{first}..{head}"))
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        next_index = 0.0
        while not stop.is_set():
            try:
                await self.submit_pending()
                if time.monotonic() >= next_index:
                    await self.index()
                    next_index = time.monotonic() + self.settings.index_interval_s
                if failures:
                    log.info("anchoring_recovered", extra=kv(after_failures=failures))
                failures = 0
                self.last_error = None
                wait = self.settings.poll_s
            except (ChainError, DaemonError, OSError, TimeoutError) as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                allowed, suppressed = self._limiter.allow(type(exc).__name__)
                if allowed:
                    log.warning(
                        "anchoring_delayed", extra=kv(failures=failures, suppressed=suppressed, error=exc)
                    )
                wait = min(60.0, self.settings.poll_s * 2 ** min(failures, 6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    def health(self) -> dict[str, Any]:
        return {
            "status": "degraded" if self.last_error else "ok",
            "contract": self.settings.contract,
            "sent": self.sent,
            "conflicts": self.conflicts,
            "indexed": self.indexed,
            "last_error": self.last_error,
        }
