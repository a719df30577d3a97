"""The chaos suite: faults in turn on a --netns devnet while cameras record, and zero loss after each.

Faults, one after another: a mirror partitioned, the producer partitioned from everything
(it buffers at the edge), kill -9 and restart of each daemon type (Kubo, cluster peer,
catalog, producer, mirror, gateway), a camera outage, and 5 % loss with 200 ms delay on a
mirror's link. After each fault heals, the suite takes the segments ffmpeg has written so
far and waits, up to a bound, until every one of them is in the catalog exactly once, in
every mirror's store byte for byte and in its day playlist, and no process has leaked.
The answer is one row per fault: how long recovery took, how many segments were recorded
during the fault (at risk) and how many are missing at the bound (lost, must be 0).

``camswarm devnet chaos`` runs it (``make chaos``: 2-minute faults, 4 cameras); the
integration test runs a shortened form.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import m3u8

from node.catalog import Catalog
from node.devnet import network
from node.devnet.netns import Fault
from node.procs import pids_mentioning

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

    written: int = 0
    problems: list[str] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # sha256 of segments not everywhere yet

    @property
    def clean(self) -> bool:
        return not self.problems and not self.missing


class _Hashes:
    """sha256 of files, cached by (path, size, mtime): audits run again and again."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int], str] = {}

    def of(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        digest = self._seen.get(key)
        if digest is None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self._seen[key] = digest
        return digest


def written_segments(sessions: Path, until: float) -> dict[tuple[str, str], list[Path]]:
    """(factory, device) -> the complete segment files ffmpeg wrote up to ``until`` (mtime)."""
    found: dict[tuple[str, str], list[Path]] = {}
    for path in sessions.glob("*/*/*/*.ts"):  # factory/device/session/segment.ts
        try:
            if path.stat().st_mtime > until:
                continue
        except FileNotFoundError:
            continue  # removed by local retention after upload
        factory, device = path.parts[-4], path.parts[-3]
        found.setdefault((factory, device), []).append(path)
    return found


async def audit(directory: Path, until: float, hashes: _Hashes) -> Audit:
    """Check every segment ffmpeg wrote up to ``until`` against the catalog, mirrors and playlists."""
    status = network.status(directory)
    result = Audit()
    sessions = Path(status["producer"]["state_dir"]) / "sessions"
    written = written_segments(sessions, until)
    async with Catalog(status["catalog"]) as catalog:
        for (factory, device), files in sorted(written.items()):
            docs = await catalog.segments_by_seq(factory, device, 0, 1 << 40)
            seqs = [d["seq"] for d in docs]
            if seqs != list(range(len(docs))):
                result.problems.append(f"{factory}/{device}: catalog seqs not 0..n-1")
            by_sha: dict[str, list[dict[str, Any]]] = {}
            for doc in docs:
                by_sha.setdefault(str(doc["sha256"]), []).append(doc)
            for path in files:
                digest = hashes.of(path)
                if digest is None:
                    continue
                result.written += 1
                found = by_sha.get(digest, [])
                if len(found) > 1:
                    result.problems.append(f"{factory}/{device}: {path.name} catalogued {len(found)} times")
                if not found:
                    result.missing.add(digest)
                    continue
                doc = found[0]
                for mirror, info in status["mirrors"].items():
                    day_dir = Path(info["store"]) / factory / device / doc["start"].strftime("%Y-%m-%d")
                    if hashes.of(day_dir / doc["filename"]) != digest:
                        result.missing.add(digest)
                    elif not _listed(day_dir / "day.m3u8", doc["filename"]):
                        result.missing.add(digest)
                        result.problems.append(
                            f"{mirror}: {doc['filename']} stored but not in its day playlist"
                        )
    ffmpegs = len(pids_mentioning(directory, executable="ffmpeg"))
    cameras = sum(1 for c in status["cameras"] if c["running"])
    if ffmpegs > len(status["cameras"]):
        result.problems.append(f"{ffmpegs} ffmpeg processes for {cameras} cameras (leaked)")
    dead = [name for name, p in status["processes"].items() if not p["alive"]]
    if dead:
        result.problems.append(f"not running: {', '.join(dead)}")
    return result


_playlists: dict[tuple[str, int], set[str]] = {}


def _listed(playlist: Path, filename: str) -> bool:
    """Whether the day playlist parses and lists ``filename``."""
    try:
        st = playlist.stat()
    except FileNotFoundError:
        return False
    key = (str(playlist), st.st_mtime_ns)
    uris = _playlists.get(key)
    if uris is None:
        parsed = m3u8.loads(playlist.read_text())
        uris = {str(s.uri).rsplit("/", 1)[-1] for s in parsed.segments}
        _playlists[key] = uris
    return filename in uris


async def _recorded_between(directory: Path, start: float, end: float) -> int:
    status = network.status(directory)
    sessions = Path(status["producer"]["state_dir"]) / "sessions"
    count = 0
    for files in written_segments(sessions, end).values():
        count += sum(1 for p in files if p.stat().st_mtime >= start)
    return count


# --- the faults --------------------------------------------------------------------------------


async def _hold(seconds: float) -> None:
    await asyncio.sleep(seconds)  # the fault's length, not a wait for a condition


def partition(host: str) -> Callable[[Path, float], Awaitable[None]]:
    async def run(directory: Path, hold: float) -> None:
        await network.fault(directory, host, Fault(down=True))
        try:
            await _hold(hold)
        finally:
            await network.fault(directory, host, Fault())

    return run


def impair(host: str, delay_ms: float, loss_pct: float) -> Callable[[Path, float], Awaitable[None]]:
    async def run(directory: Path, hold: float) -> None:
        await network.fault(directory, host, Fault(delay_ms=delay_ms, loss_pct=loss_pct))
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


def faults(mirror: str = "mirror1") -> list[tuple[str, Callable[[Path, float], Awaitable[None]], bool]]:
    """(label, run, held): the suite in order; ``held`` faults last the hold time."""
    return [
        (f"{mirror} partitioned", partition(mirror), True),
        ("producer partitioned from everything", partition("producer"), True),
        *((f"kill -9 {p}, restart", crash(p), False) for p in CRASHED),
        ("camera cam1 outage", camera_outage("cam1"), True),
        (f"{mirror} link 5% loss, 200 ms delay", impair(mirror, 200.0, 5.0), True),
    ]


# One of each daemon type: Kubo, cluster peer, catalog, producer, mirror, gateway.
CRASHED = ("kubo-producer", "cluster-producer", "catalog", "producer", "mirror1", "gateway1")


async def run_suite(
    directory: Path,
    *,
    hold: float,
    bound: float,
    only: list[str] | None = None,
    progress: Progress = lambda _: None,
) -> list[Row]:
    """Run each fault in turn on the running --netns devnet in ``directory``; one row each."""
    rows = []
    hashes = _Hashes()
    for label, run, held in faults():
        if only and not any(word in label for word in only):
            continue
        progress(f"fault: {label}")
        began = time.time()
        await run(directory, hold)
        healed = time.time()
        rows.append(await _recover(directory, label, began, healed, bound, hashes, held, progress))
    return rows


async def _recover(
    directory: Path,
    label: str,
    began: float,
    healed: float,
    bound: float,
    hashes: _Hashes,
    held: bool,
    progress: Progress,
) -> Row:
    last = Audit()
    while True:
        last = await audit(directory, healed, hashes)
        waited = time.time() - healed
        if last.clean or waited >= bound:
            break
        await asyncio.sleep(1.0)  # the poll interval of a bounded wait
    at_risk = await _recorded_between(directory, began, healed)
    row = Row(
        fault=label,
        held_s=round(healed - began, 1) if held else 0.0,
        recovery_s=round(time.time() - healed, 1),
        at_risk=at_risk,
        lost=len(last.missing),
        detail="; ".join(last.problems[:3]),
    )
    progress(f"  recovered in {row.recovery_s:g} s; {row.at_risk} segments at risk, {row.lost} lost")
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


async def baseline(directory: Path, bound: float, progress: Progress = lambda _: None) -> Row:
    """Before the first fault: every segment so far everywhere (the suite starts from a clean state)."""
    progress("baseline: every segment so far in the catalog and every mirror")
    now = time.time()
    return await _recover(directory, "baseline (no fault)", now, now, bound, _Hashes(), False, progress)


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
    """Start a --netns devnet in ``directory`` (plaintext cameras), run the suite, stop it (unless keep)."""
    await network.up(
        directory, mirrors=mirrors, cameras=cameras, netns_hosts=True, encrypted=(), progress=progress
    )
    try:
        rows = [await baseline(directory, bound, progress)]
        rows += await run_suite(directory, hold=hold, bound=bound, only=only, progress=progress)
        return rows
    finally:
        if not keep:
            progress("stopping the devnet")
            await network.down(directory)
