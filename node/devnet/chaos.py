"""The chaos suite: faults in turn on a --netns devnet while cameras record, and zero loss after each.

Faults, one after another: a mirror partitioned, the producer partitioned from everything
(it buffers at the edge), kill -9 and restart of each daemon type (Kubo, cluster peer,
catalog, producer, mirror, gateway), a camera outage, and 5 % loss with 200 ms delay on a
mirror's link. After each fault heals, the suite takes the segments ffmpeg has written so
far and waits, up to a bound, until every one of them is in the catalog exactly once, in
every mirror's store byte for byte and in its day playlist, and no process has leaked.
The answer is one row per fault: how long recovery took, how many segments were recorded
during the fault (at risk) and how many are missing at the bound (lost, must be 0).

A last row checks integrity across all the faults: every period that ended before the last
heal is closed, anchored on the devnet's chain, and each mirror's copy of it recomputes to
the anchored root (``camswarm verify``'s check). A segment left out of its period's root,
say one recovered after a crash once its period had closed, shows up there.

``camswarm devnet chaos`` runs it (``make chaos``: 2-minute faults, 4 cameras); the
integration test runs a shortened form.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import m3u8

from mirror.store import Store
from mirror.verify import Sources, periods_of, verify_range
from node.anchoring import load_config as load_anchor_config
from node.anchors import Verdict
from node.catalog import Catalog
from node.chain import Registry
from node.devnet import network
from node.devnet.netns import Fault
from node.kubo import KuboClient
from node.merkle import period_bounds
from node.procs import ConditionTimeout, pids_mentioning, poll_until
from producer.outbox import Journaled, read_journal

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    fault: str
    held_s: float  # how long the fault lasted
    recovery_s: float  # from the heal until every check passed (or the bound)
    at_risk: int  # segments ffmpeg wrote while the fault lasted
    lost: int  # segments still missing somewhere at the bound
    detail: str = ""  # other problems at the bound (duplicates, playlists, processes)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.detail


@dataclass
class Audit:
    """What is missing, right now, for the segments ffmpeg wrote up to a moment."""

    at_risk: int = 0  # of those segments, the ones written since the fault began
    problems: list[str] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # files ffmpeg wrote that are not everywhere yet

    @property
    def clean(self) -> bool:
        return not self.problems and not self.missing


class _Files:
    """Digests of files and the segment names of playlists, cached by their mtime: audits repeat."""

    def __init__(self) -> None:
        self._digests: dict[tuple[str, int, int], str] = {}
        self._playlists: dict[tuple[str, int], set[str]] = {}

    def sha256(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        digest = self._digests.get(key)
        if digest is None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self._digests[key] = digest
        return digest

    def listed(self, playlist: Path, filename: str) -> bool:
        """Whether the day playlist parses and lists ``filename``."""
        try:
            key = (str(playlist), playlist.stat().st_mtime_ns)
        except FileNotFoundError:
            return False
        names = self._playlists.get(key)
        if names is None:
            parsed = m3u8.loads(playlist.read_text())
            names = {str(s.uri).rsplit("/", 1)[-1] for s in parsed.segments}
            self._playlists[key] = names
        return filename in names


def written_segments(sessions: Path, until: float) -> dict[tuple[str, str], list[tuple[Path, float]]]:
    """(factory, device) -> (file, mtime) of the complete segments ffmpeg wrote up to ``until``."""
    found: dict[tuple[str, str], list[tuple[Path, float]]] = {}
    for path in sessions.glob("*/*/*/*.ts"):  # factory/device/session/segment.ts
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue  # removed by local retention after upload
        if mtime <= until:
            found.setdefault((path.parts[-4], path.parts[-3]), []).append((path, mtime))
    return found


async def audit(directory: Path, since: float, until: float, files: _Files) -> Audit:
    """Check every segment ffmpeg wrote up to ``until`` against the catalog, mirrors and playlists.

    The producer's outbox ties each file to its seq, and so to its catalog document; an
    encrypted camera's document and mirrored copies carry the ciphertext's hash, a plaintext
    camera's the file's own.
    """
    status = network.status(directory)
    result = Audit()
    state_dir = Path(status["producer"]["state_dir"])
    written = written_segments(state_dir / "sessions", until)
    journal = {(j.camera, j.session, j.filename): j for j in read_journal(state_dir / "outbox.sqlite3")}
    async with Catalog(status["catalog"]) as catalog:
        for (factory, device), segments in sorted(written.items()):
            docs = await catalog.segments_by_seq(factory, device, 0, 1 << 40)
            if [d["seq"] for d in docs] != list(range(len(docs))):
                result.problems.append(f"{factory}/{device}: catalog seqs not 0..n-1")
            repeated = len(docs) - len({str(d["sha256"]) for d in docs})
            if repeated:
                result.problems.append(f"{factory}/{device}: {repeated} segment(s) catalogued twice")
            by_seq = {int(d["seq"]): d for d in docs}
            for path, mtime in segments:
                digest = files.sha256(path)
                if digest is None:
                    continue
                result.at_risk += mtime >= since
                entry = journal.get((f"{factory}/{device}", path.parent.name, path.name))
                doc = _catalogued(entry, digest, by_seq, result)
                if doc is None or not _mirrored(status, factory, device, doc, files, result):
                    result.missing.add(str(path))
    ffmpegs = len(pids_mentioning(directory, executable="ffmpeg"))
    if ffmpegs > len(status["cameras"]):
        result.problems.append(f"{ffmpegs} ffmpeg processes for {len(status['cameras'])} cameras (leaked)")
    dead = [name for name, p in status["processes"].items() if not p["alive"]]
    if dead:
        result.problems.append(f"not running: {', '.join(dead)}")
    return result


def _catalogued(
    entry: Journaled | None, digest: str, by_seq: dict[int, dict[str, Any]], result: Audit
) -> dict[str, Any] | None:
    """The catalog document of a file ffmpeg wrote, through its journal entry; None if not there yet."""
    if entry is None:
        return None  # not journaled yet
    if entry.sha256 != digest:
        result.problems.append(f"{entry.camera}: {entry.filename} journaled with another hash")
    doc = by_seq.get(entry.seq)
    if doc is not None and doc["sha256"] != entry.published_sha256:
        result.problems.append(f"{entry.camera}: seq {entry.seq} catalogued with another hash")
    return doc


def _mirrored(
    status: dict[str, Any],
    factory: str,
    device: str,
    doc: dict[str, Any],
    files: _Files,
    result: Audit,
) -> bool:
    """Whether every mirror stores the segment byte for byte and lists it in its day playlist."""
    digest = str(doc["sha256"])
    everywhere = True
    for mirror, info in status["mirrors"].items():
        day_dir = Path(info["store"]) / factory / device / doc["start"].strftime("%Y-%m-%d")
        if files.sha256(day_dir / doc["filename"]) != digest:
            everywhere = False
        elif not files.listed(day_dir / "day.m3u8", doc["filename"]):
            everywhere = False
            result.problems.append(f"{mirror}: {doc['filename']} stored but not in its day playlist")
    return everywhere


ENCRYPTED = ("cam1",)  # the suite's encrypted camera: its segments travel and are stored as ciphertext

# --- the faults --------------------------------------------------------------------------------


async def _hold(seconds: float) -> None:
    await asyncio.sleep(seconds)  # the fault's length, not a wait for a condition


def degrade(host: str, fault: Fault) -> Callable[[Path, float], Awaitable[None]]:
    """``host``'s link has ``fault`` (cut off, or slow and lossy) for the hold time, then heals."""

    async def run(directory: Path, hold: float) -> None:
        await network.fault(directory, host, fault)
        try:
            await _hold(hold)
        finally:
            await network.fault(directory, host, Fault())

    return run


def crash(process: str) -> Callable[[Path, float], Awaitable[None]]:
    async def run(directory: Path, hold: float) -> None:
        await network.kill_process(directory, process)
        await network.start_process(directory, process)

    return run


def camera_outage(device: str) -> Callable[[Path, float], Awaitable[None]]:
    async def run(directory: Path, hold: float) -> None:
        name = network.camera_process(directory, device)
        await network.stop_process(directory, name, term_timeout=5.0)
        try:
            await _hold(hold)
        finally:
            await network.start_process(directory, name)

    return run


# The mirror the suite partitions, crashes and degrades.
MIRROR = "mirror1"
# One of each daemon type: Kubo, cluster peer, catalog, producer, mirror, gateway.
CRASHED = ("kubo-producer", "cluster-producer", "catalog", "producer", MIRROR, "gateway1")


def faults() -> list[tuple[str, Callable[[Path, float], Awaitable[None]], bool]]:
    """(label, run, held): the suite in order; ``held`` faults last the hold time."""
    return [
        (f"{MIRROR} partitioned", degrade(MIRROR, Fault(down=True)), True),
        ("producer partitioned from everything", degrade("producer", Fault(down=True)), True),
        *((f"kill -9 {p}, restart", crash(p), False) for p in CRASHED),
        ("camera cam1 outage", camera_outage("cam1"), True),
        (f"{MIRROR} link 5% loss, 200 ms delay", degrade(MIRROR, Fault(delay_ms=200.0, loss_pct=5.0)), True),
    ]


async def run_suite(
    directory: Path,
    *,
    hold: float,
    bound: float,
    only: list[str] | None = None,
    progress: Progress = lambda _: None,
) -> list[Row]:
    """The baseline, then each fault in turn on the running --netns devnet in ``directory``; a row each."""
    files = _Files()
    progress("baseline: every segment so far in the catalog and every mirror")
    now = time.time()
    rows = [
        await _recover(
            directory, "baseline (no fault)", now, now, bound, files, held=False, progress=progress
        )
    ]
    for label, run, held in faults():
        if only and not any(word in label for word in only):
            continue
        progress(f"fault: {label}")
        began = time.time()
        await run(directory, hold)
        healed = time.time()
        rows.append(
            await _recover(directory, label, began, healed, bound, files, held=held, progress=progress)
        )
    rows.append(await _integrity(directory, time.time(), bound, progress))
    return rows


async def _recover(
    directory: Path,
    label: str,
    began: float,
    healed: float,
    bound: float,
    files: _Files,
    *,
    held: bool,
    progress: Progress,
) -> Row:
    """Poll the audit of what ffmpeg wrote up to the heal until it is clean or ``bound`` has passed."""
    last = Audit()

    async def clean() -> bool:
        nonlocal last
        last = await audit(directory, began, healed, files)
        return last.clean

    with contextlib.suppress(ConditionTimeout):  # the row says what is still missing
        await poll_until(clean, timeout=bound, what=f"recovery from {label}", interval=1.0)
    row = Row(
        fault=label,
        held_s=round(healed - began, 1) if held else 0.0,
        recovery_s=round(time.time() - healed, 1),
        at_risk=last.at_risk,
        lost=len(last.missing),
        detail="; ".join(last.problems[:3]),
    )
    progress(f"  recovered in {row.recovery_s:g} s; {row.at_risk} segments at risk, {row.lost} lost")
    return row


# --- integrity across the faults -----------------------------------------------------------

INTEGRITY = "integrity: closed periods anchored, every mirror's copy matches the chain"


# (mirror, factory, device, period start)
PeriodKey = tuple[str, str, str, datetime]


@dataclass
class _Periods:
    """The latest verdict per mirror, camera and period; OK and EMPTY ones are final."""

    verdicts: dict[PeriodKey, Verdict] = field(default_factory=dict)

    def settled(self, key: PeriodKey) -> bool:
        verdict = self.verdicts.get(key)
        return verdict is not None and verdict.status in ("OK", "EMPTY")

    def failing(self) -> list[tuple[PeriodKey, Verdict]]:
        return [(k, v) for k, v in self.verdicts.items() if v.status not in ("OK", "EMPTY")]


async def check_periods(
    stores: dict[str, Sources], catalog: Catalog, period_s: int, end: datetime, periods: _Periods
) -> None:
    """Verify each camera's periods that ended by ``end`` in every mirror's store, except those
    already settled (each check recomputes every segment's CID: a poll must not redo them)."""
    for camera in await catalog.list_cameras():
        factory, device = str(camera["factory"]), str(camera["device"])
        first = await catalog.first_segment(factory, device)
        if first is None or first["start"] >= end:
            continue
        for start, stop in periods_of(first["start"], end, period_s):
            for mirror, sources in stores.items():
                key = (mirror, factory, device, start)
                if not periods.settled(key):
                    async for verdict in verify_range(sources, factory, device, start, stop, period_s):
                        periods.verdicts[key] = verdict


async def _integrity(directory: Path, cutoff: float, bound: float, progress: Progress) -> Row:
    """Poll until every period that ended before ``cutoff`` verifies in every mirror, or ``bound``."""
    status = network.status(directory)
    settings = load_anchor_config(Path(status["chain"]["anchor_config"])).anchor
    end, _ = period_bounds(datetime.fromtimestamp(cutoff, UTC), settings.period_s)
    periods = _Periods()
    progress(f"check: {INTEGRITY}")
    registry = Registry(settings.rpc_url, settings.contract)
    try:
        async with (
            Catalog(settings.catalog, settings.catalog_db) as catalog,
            KuboClient(settings.kubo_api, timeout=60) as kubo,
        ):
            stores = {
                mirror: Sources(registry, kubo, catalog, Store(Path(info["store"])))
                for mirror, info in sorted(status["mirrors"].items())
            }

            async def verified() -> bool:
                await check_periods(stores, catalog, settings.period_s, end, periods)
                return bool(periods.verdicts) and not periods.failing()

            with contextlib.suppress(ConditionTimeout):
                await poll_until(verified, timeout=bound, what="closed periods to verify", interval=2.0)
    finally:
        await registry.close()
    failing = periods.failing()
    first_mirror = min((k[0] for k in periods.verdicts), default="")
    row = Row(
        fault=f"{INTEGRITY} ({len({k[1:] for k in periods.verdicts})} periods)",
        held_s=0.0,
        recovery_s=round(time.time() - cutoff, 1),
        at_risk=sum(v.segments for k, v in periods.verdicts.items() if k[0] == first_mirror),  # once
        lost=sum(v.segments for _, v in failing),
        detail="; ".join(f"{k[0]} {k[1]}/{k[2]} {v.line()}" for k, v in failing[:3])
        or ("" if periods.verdicts else "no closed period"),
    )
    progress(f"  {len(periods.verdicts)} verdicts, {len(failing)} not OK")
    return row


def table(rows: list[Row]) -> str:
    """The suite's answer as a Markdown table."""
    lines = [
        "| fault | held (s) | recovery (s) | segments at risk | segments lost |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        held = f"{r.held_s:g}" if r.held_s else "-"
        lost = f"**{r.lost}**" + (f" ({r.detail})" if r.detail else "")
        lines.append(f"| {r.fault} | {held} | {r.recovery_s:g} | {r.at_risk} | {lost} |")
    return "\n".join(lines)


async def chaos(
    directory: Path,
    *,
    cameras: int,
    mirrors: int,
    hold: float,
    bound: float,
    only: list[str] | None = None,
    keep: bool = False,
    progress: Progress = lambda _: None,
) -> list[Row]:
    """Start a --netns devnet in ``directory`` (cam1 encrypted, as in the demo), run the suite, stop it
    (unless keep)."""
    await network.up(
        directory, mirrors=mirrors, cameras=cameras, netns_hosts=True, encrypted=ENCRYPTED, progress=progress
    )
    try:
        return await run_suite(directory, hold=hold, bound=bound, only=only, progress=progress)
    finally:
        if not keep:
            progress("stopping the devnet")
            await network.down(directory)
