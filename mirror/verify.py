"""``camswarm verify``: check footage against the roots anchored on chain.

Range mode recomputes every segment's CID from the bytes (Kubo ``add
--only-hash``, the producer's add settings), from a mirror's store or fetched by
CID, rebuilds each period's root and compares it with the contract. Proof mode
checks an export's sidecar: the clip's hash, each segment's inclusion proof and
each period root against the chain. The verdicts rest on the bytes and the chain
alone; the catalog, when reachable, only names the files that differ.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mirror.store import Store
from node.anchors import Leaf, ProofError, Stored, Verdict, check_proof, judge, record_leaves, unix
from node.catalog import Catalog
from node.chain import Registry
from node.errors import DaemonError
from node.files import hash_file
from node.kubo import KuboClient
from node.layout import day_name
from node.merkle import period_bounds


def periods_of(start: datetime, end: datetime, period_s: int) -> list[tuple[datetime, datetime]]:
    """The periods overlapping ``[start, end)``, in order."""
    if end <= start:
        raise ValueError("--end must be after --start")
    first, _ = period_bounds(start, period_s)
    step = timedelta(seconds=period_s)
    out = []
    moment = first
    while moment < end:
        out.append((moment, moment + step))
        moment += step
    return out


@dataclass
class Sources:
    """What range verification reads: the chain, Kubo, and optionally a store and the catalog."""

    registry: Registry
    kubo: KuboClient
    catalog: Catalog | None
    store: Store | None


async def _stored_from_store(
    sources: Sources, factory: str, device: str, period: tuple[datetime, datetime]
) -> list[Stored]:
    assert sources.store is not None
    start, end = period
    day = sources.store.read_day(factory, device, day_name(start))
    out = []
    for segment in sorted(day.values(), key=lambda s: s.seq):
        if not start <= segment.start < end:
            continue
        path = sources.store.segment_path(segment)
        try:
            actual: str | None = (await sources.kubo.add(path, only_hash=True, pin=False)).cid
        except FileNotFoundError:
            actual = None
        out.append(Stored(segment.seq, segment.filename, segment.cid, actual))
    return out


async def _stored_from_network(
    sources: Sources, factory: str, device: str, period: tuple[datetime, datetime]
) -> list[Stored]:
    assert sources.catalog is not None
    docs = await sources.catalog.segments_between(factory, device, period[0], period[1])
    out = []
    for doc in sorted(docs, key=lambda d: d["seq"]):
        try:
            data = await sources.kubo.cat(doc["cid"], timeout=60)
            actual: str | None = (await sources.kubo.add(data, only_hash=True, pin=False)).cid
        except DaemonError:
            actual = None
        out.append(Stored(int(doc["seq"]), doc["filename"], doc["cid"], actual))
    return out


async def verify_range(
    sources: Sources,
    factory: str,
    device: str,
    start: datetime,
    end: datetime,
    period_s: int,
) -> AsyncIterator[Verdict]:
    """One verdict per period overlapping the range, as each is checked."""
    for period in periods_of(start, end, period_s):
        if sources.store is not None:
            stored = await _stored_from_store(sources, factory, device, period)
        else:
            stored = await _stored_from_network(sources, factory, device, period)
        on_chain = await sources.registry.read(factory, device, unix(period[0]))
        leaves: list[Leaf] | None = None
        if sources.catalog is not None and on_chain is not None:
            records = await sources.catalog.anchors_between(factory, device, period[0], period[1])
            leaves = record_leaves(records[0]) if records else None
        verdict = judge(period, stored, None if on_chain is None else on_chain.root, catalog_leaves=leaves)
        if on_chain is not None and on_chain.period_seconds != period_s and verdict.status == "OK":
            verdict = Verdict(
                verdict.period_start,
                verdict.period_s,
                "MISMATCH",
                verdict.segments,
                f"anchored with period {on_chain.period_seconds} s, verified with {period_s} s",
            )
        yield verdict


@dataclass(frozen=True)
class ProofLine:
    status: str
    what: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<10} {self.what}" + (f"  {self.detail}" if self.detail else "")


def load_proof(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProofError(f"proof file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProofError(f"{path} is not a readable JSON proof: {exc}") from None
    if not isinstance(data, dict):
        raise ProofError(f"{path} is not a JSON object")
    return data


async def verify_proof(
    registry: Registry, proof: Mapping[str, Any], clip: Path, *, trusted_contract: str
) -> list[ProofLine]:
    """Check a clip and its sidecar proof against the chain; ProofError for a malformed proof."""
    periods = check_proof(proof)
    named = str(proof.get("contract") or "")
    if named.lower() != trusted_contract.lower():
        raise ProofError(
            f"the proof names contract {named or 'none'}; this verifier trusts {trusted_contract}"
        )
    named_chain = proof.get("chain_id")
    if named_chain is not None:
        serving = await registry.chain_id()
        if named_chain != serving:
            raise ProofError(f"the proof names chain {named_chain}; the RPC serves chain {serving}")
    lines = []
    size, digest = await asyncio.to_thread(hash_file, clip)
    expected = proof.get("clip") or {}
    if digest == expected.get("sha256") and size == expected.get("size"):
        lines.append(ProofLine("OK", f"clip {clip.name}", f"sha256 {digest[:16]}.. size {size}"))
    else:
        lines.append(ProofLine("MISMATCH", f"clip {clip.name}", "its bytes are not the exported clip's"))
    lines.append(ProofLine("OK", f"{len(proof['segments'])} segment(s)", "every CID is in its period's root"))
    for period_id, period_start, root in periods:
        on_chain = await registry.read(str(proof["factory"]), str(proof["device"]), period_start)
        when = datetime.fromtimestamp(period_start, UTC)
        what = f"period {when:%Y-%m-%dT%H:%M:%SZ}"
        if on_chain is None:
            lines.append(ProofLine("UNANCHORED", what))
        elif on_chain.root == root:
            tx = proof["periods"][period_id].get("tx_hash") or "?"
            lines.append(ProofLine("OK", what, f"root {root.hex()[:16]}.. anchored in tx {tx}"))
        else:
            lines.append(
                ProofLine(
                    "MISMATCH", what, f"the chain holds root {on_chain.root.hex()[:16]}.. ({period_id})"
                )
            )
    return lines
