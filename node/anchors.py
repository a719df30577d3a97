"""Anchor records, verification verdicts and export proofs: the pure side of tamper evidence.

A camera's footage is cut into periods (``node.merkle.period_bounds``: they tile
each UTC day). When a period closes, the producer reduces the CIDs of the
period's segments, in seq order, to one root (``node.merkle.period_root``) and
records it in the catalog's ``anchors`` collection; ``camswarm anchor`` then
writes that root on chain, once per camera and period. Verification recomputes
the root from what a store holds and compares it with the chain; the catalog
only helps name which file differs, it never decides a verdict.

No I/O here: every rule is a plain function tested in tests/unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from node.merkle import inclusion_proof, period_root, verify_inclusion

PROOF_VERSION = 1


def anchor_id(factory: str, device: str, period_start: datetime) -> str:
    """The ``anchors`` document id: unique per camera and period, sorting in time order."""
    return f"{factory}/{device}/{period_start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def unix(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return int(moment.timestamp())


@dataclass(frozen=True)
class Leaf:
    """One segment as a period root sees it."""

    seq: int
    filename: str
    cid: str


def leaves_of(docs: Iterable[Mapping[str, Any]]) -> list[Leaf]:
    """The period's segments in seq order (catalog segment documents or store index entries)."""
    return sorted((Leaf(int(d["seq"]), str(d["filename"]), str(d["cid"])) for d in docs), key=lambda x: x.seq)


def anchor_record(
    factory: str,
    device: str,
    period: tuple[datetime, datetime],
    docs: Sequence[Mapping[str, Any]],
    *,
    day_dir: str,
    day_dir_cid: str | None,
    producer: str,
    created_at: datetime,
) -> dict[str, Any]:
    """The ``anchors`` document of a closed period (``docs``: its segments, any order)."""
    start, end = period
    leaves = leaves_of(docs)
    if not leaves:
        raise ValueError("an anchor record needs at least one segment")
    return {
        "_id": anchor_id(factory, device, start),
        "factory": factory,
        "device": device,
        "period_start": start,
        "period_end": end,
        "period_s": int((end - start).total_seconds()),
        "root": period_root([leaf.cid for leaf in leaves]).hex(),
        # Objects, not [seq, name, cid] triples: FerretDB refuses nested arrays.
        "segments": [{"seq": leaf.seq, "filename": leaf.filename, "cid": leaf.cid} for leaf in leaves],
        "count": len(leaves),
        "first_seq": leaves[0].seq,
        "last_seq": leaves[-1].seq,
        # The day's MFS directory as the period closed: a browsable snapshot of the day so far.
        "day_dir": day_dir,
        "day_dir_cid": day_dir_cid,
        "producer": producer,
        "created_at": created_at,
    }


def record_leaves(record: Mapping[str, Any]) -> list[Leaf]:
    return leaves_of(record["segments"])


def next_cursor(
    period_end: datetime,
    period_s: int,
    *,
    next_recorded: datetime | None,
    oldest_pending: datetime | None,
    settled_until: datetime,
) -> datetime:
    """Where to look for the next closable period after an empty one ending at ``period_end``.

    Skips a run of empty periods in one step: the next segment the catalog has
    (``next_recorded``), else the oldest segment still in the producer's outbox,
    else the period holding ``settled_until`` (before which every segment is journaled).
    """
    target = next_recorded or oldest_pending or settled_until
    if target <= period_end:
        return period_end
    day = target.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    index = int((target - day).total_seconds()) // period_s
    return max(period_end, day + timedelta(seconds=index * period_s))


def closable(
    period_end: datetime, now: datetime, close_delay_s: float, oldest_pending: datetime | None
) -> bool:
    """A period closes once ``close_delay_s`` has passed after it and none of its segments is pending."""
    if now < period_end + timedelta(seconds=close_delay_s):
        return False
    return oldest_pending is None or oldest_pending >= period_end


# --- verification -------------------------------------------------------------------------

Status = Literal["OK", "MISMATCH", "UNANCHORED", "EMPTY"]


@dataclass(frozen=True)
class Stored:
    """A segment file as a store holds it: its name, the CID it was announced under, its CID now."""

    seq: int
    filename: str
    announced_cid: str
    actual_cid: str | None  # None: the file is missing or unreadable


@dataclass(frozen=True)
class Verdict:
    period_start: datetime
    period_s: int
    status: Status
    segments: int
    detail: str = ""
    files: list[str] = field(default_factory=list)

    def line(self) -> str:
        start = self.period_start.astimezone(UTC)
        end = start + timedelta(seconds=self.period_s)
        span = f"{start:%Y-%m-%dT%H:%M:%SZ}..{end:%H:%M:%SZ}"
        text = f"{self.status:<10} {span}  segments={self.segments}"
        if self.detail:
            text += f"  {self.detail}"
        if self.files:
            text += "  files=" + ",".join(self.files)
        return text


def judge(
    period: tuple[datetime, datetime],
    stored: Sequence[Stored],
    chain_root: bytes | None,
    *,
    catalog_leaves: Sequence[Leaf] | None = None,
) -> Verdict:
    """Compare what a store holds for one period with the root on chain.

    The verdict rests on the recomputed CIDs and the chain alone. ``catalog_leaves``
    (the period's anchor record) only helps name the files when the lists differ.
    """
    start, end = period
    period_s = int((end - start).total_seconds())
    ordered = sorted(stored, key=lambda s: s.seq)
    if chain_root is None:
        status: Status = "UNANCHORED" if ordered else "EMPTY"
        return Verdict(start, period_s, status, len(ordered))
    actual = [s.actual_cid for s in ordered]
    if ordered and all(actual) and period_root([c for c in actual if c]) == chain_root:
        return Verdict(start, period_s, "OK", len(ordered))
    files = [s.filename for s in ordered if s.actual_cid != s.announced_cid]
    reasons = []
    if files:
        reasons.append(f"{len(files)} file(s) differ from their CID")
    if catalog_leaves is not None:
        expected = {leaf.filename for leaf in catalog_leaves}
        held = {s.filename for s in ordered}
        missing = sorted(expected - held)
        extra = sorted(held - expected)
        if missing:
            reasons.append(f"missing {len(missing)}")
            files.extend(missing)
        if extra:
            reasons.append(f"not anchored {len(extra)}")
            files.extend(extra)
    if not reasons:
        reasons.append("segment list differs from the anchored one")
    return Verdict(start, period_s, "MISMATCH", len(ordered), "; ".join(reasons), files)


# --- export proofs ------------------------------------------------------------------------


class ProofError(ValueError):
    """A proof document that is malformed or does not check out; the message says where."""


def build_proof(
    factory: str,
    device: str,
    clip: Mapping[str, Any],
    segments: Sequence[Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
    chain: Mapping[str, Mapping[str, Any]],
    *,
    contract: str | None,
    chain_id: int | None,
) -> dict[str, Any]:
    """The sidecar JSON of an export.

    ``segments``: the clip's catalog documents in order; ``records``: anchor records by id;
    ``chain``: indexed chain events by anchor id (tx hash, block). A segment whose period
    has no record yet is listed with ``proof: null`` (the clip is then only partly provable).
    """
    periods: dict[str, dict[str, Any]] = {}
    entries = []
    for doc in segments:
        record_id = next(
            (rid for rid, r in records.items() if r["period_start"] <= doc["start"] < r["period_end"]), None
        )
        entry: dict[str, Any] = {
            "seq": int(doc["seq"]),
            "filename": doc["filename"],
            "cid": doc["cid"],
            "start": doc["start"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "duration": float(doc["duration"]),
            "period": record_id,
            "proof": None,
        }
        if record_id is not None:
            record = records[record_id]
            cids = [leaf.cid for leaf in record_leaves(record)]
            if doc["cid"] in cids:
                entry["proof"] = [
                    [side, sibling.hex()] for side, sibling in inclusion_proof(cids, cids.index(doc["cid"]))
                ]
            if record_id not in periods:
                event = chain.get(record_id) or {}
                periods[record_id] = {
                    "period_start": unix(record["period_start"]),
                    "period_s": int(record["period_s"]),
                    "root": record["root"],
                    "segments": int(record["count"]),
                    "tx_hash": event.get("tx_hash"),
                    "block": event.get("block"),
                }
        entries.append(entry)
    return {
        "v": PROOF_VERSION,
        "factory": factory,
        "device": device,
        "clip": dict(clip),
        "contract": contract,
        "chain_id": chain_id,
        "periods": periods,
        "segments": entries,
    }


def check_proof(proof: Mapping[str, Any]) -> list[tuple[str, int, bytes]]:
    """Check every inclusion proof against its period root, offline.

    Returns the (anchor id, period start, root) of every period the proof relies on,
    for the caller to compare with the chain. Raises ProofError naming the first fault.
    """
    try:
        if proof.get("v") != PROOF_VERSION:
            raise ProofError(f"unsupported proof version {proof.get('v')!r}")
        chain_id = proof.get("chain_id")
        if chain_id is not None and (type(chain_id) is not int or chain_id <= 0):
            raise ProofError(f"chain_id {chain_id!r} is not a positive integer or null")
        periods = proof["periods"]
        used: dict[str, tuple[str, int, bytes]] = {}
        for entry in proof["segments"]:
            name = entry["filename"]
            if entry["proof"] is None:
                raise ProofError(f"segment {name} has no proof (its period was not anchored at export)")
            period = periods[entry["period"]]
            root = bytes.fromhex(period["root"])
            steps = [(side, bytes.fromhex(sibling)) for side, sibling in entry["proof"]]
            if not verify_inclusion(entry["cid"], steps, root):
                raise ProofError(f"segment {name}: CID {entry['cid']} is not in period {entry['period']}")
            used[entry["period"]] = (entry["period"], int(period["period_start"]), root)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProofError):
            raise
        raise ProofError(f"malformed proof: {type(exc).__name__}: {exc}") from None
    if not used:
        raise ProofError("the proof lists no segments")
    return list(used.values())
