"""Anchor records, period close rules, verdicts and export proofs (node/anchors.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from node.anchors import (
    Leaf,
    ProofError,
    Stored,
    anchor_id,
    anchor_record,
    build_proof,
    check_proof,
    closable,
    judge,
    next_cursor,
)
from node.merkle import period_root
from tests.unit.test_merkle import CIDS

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def seg(seq: int, cid: str, at: datetime) -> dict[str, Any]:
    return {"seq": seq, "filename": f"{at:%H%M%S}-{seq:010d}.ts", "cid": cid, "start": at, "duration": 2.0}


def record(docs: list[dict[str, Any]], start: datetime = T0) -> dict[str, Any]:
    return anchor_record(
        "factory1",
        "cam1",
        (start, start + MIN),
        docs,
        day_dir="/camswarm/factory1/cam1/2026/11/21",
        day_dir_cid=None,
        producer="p",
        created_at=start + 2 * MIN,
    )


def test_anchor_record_orders_by_seq_and_roots_the_cids() -> None:
    docs = [seg(3, CIDS[2], T0 + timedelta(seconds=4)), seg(1, CIDS[0], T0), seg(2, CIDS[1], T0)]
    rec = record(docs)
    assert rec["_id"] == "factory1/cam1/2026-11-21T10:00:00Z" == anchor_id("factory1", "cam1", T0)
    assert [s["seq"] for s in rec["segments"]] == [1, 2, 3]
    assert rec["root"] == period_root(CIDS[:3]).hex()
    assert (rec["count"], rec["first_seq"], rec["last_seq"], rec["period_s"]) == (3, 1, 3, 60)
    with pytest.raises(ValueError, match="at least one segment"):
        record([])


@pytest.mark.parametrize(
    ("now_after_end_s", "pending", "expected"),
    [
        (5, None, False),  # the close delay has not passed
        (10, None, True),
        (10, T0 + MIN - timedelta(seconds=2), False),  # a segment of the period is still in the outbox
        (10, T0 + MIN, True),  # the oldest pending segment belongs to the next period
        (3600, T0, False),  # an outage: waits however long it takes
    ],
)
def test_closable(now_after_end_s: int, pending: datetime | None, expected: bool) -> None:
    end = T0 + MIN
    assert closable(end, end + timedelta(seconds=now_after_end_s), 10.0, pending) is expected


@pytest.mark.parametrize(
    ("recorded", "pending", "settled", "expected"),
    [
        (T0 + 5 * MIN + timedelta(seconds=30), None, T0 + 9 * MIN, T0 + 5 * MIN),  # jumps to the next segment
        (None, T0 + 3 * MIN + timedelta(seconds=1), T0 + 9 * MIN, T0 + 3 * MIN),  # else the outbox's oldest
        (None, None, T0 + 9 * MIN + timedelta(seconds=59), T0 + 9 * MIN),  # else the settled period
        (None, None, T0, T0 + MIN),  # never backwards: at least the next period
    ],
)
def test_next_cursor_skips_empty_periods(
    recorded: datetime | None, pending: datetime | None, settled: datetime, expected: datetime
) -> None:
    cursor = next_cursor(T0 + MIN, 60, next_recorded=recorded, oldest_pending=pending, settled_until=settled)
    assert cursor == expected


def stored(seq: int, cid: str, actual: str | None = None) -> Stored:
    return Stored(seq, f"{seq:010d}.ts", cid, cid if actual is None else actual)


PERIOD = (T0, T0 + MIN)
ROOT = period_root(CIDS[:3])


def test_judge_ok_in_any_order() -> None:
    verdict = judge(PERIOD, [stored(3, CIDS[2]), stored(1, CIDS[0]), stored(2, CIDS[1])], ROOT)
    assert (verdict.status, verdict.segments, verdict.files) == ("OK", 3, [])
    assert verdict.line().startswith("OK         2026-11-21T10:00:00Z..10:01:00Z  segments=3")


def test_judge_names_the_altered_file() -> None:
    verdict = judge(PERIOD, [stored(1, CIDS[0]), stored(2, CIDS[1], CIDS[4]), stored(3, CIDS[2])], ROOT)
    assert verdict.status == "MISMATCH"
    assert verdict.files == ["0000000002.ts"]
    assert "1 file(s) differ" in verdict.line()


def test_judge_missing_file_named_from_the_catalog_record() -> None:
    leaves = [Leaf(i + 1, f"{i + 1:010d}.ts", CIDS[i]) for i in range(3)]
    verdict = judge(PERIOD, [stored(1, CIDS[0]), stored(3, CIDS[2])], ROOT, catalog_leaves=leaves)
    assert (verdict.status, verdict.files, verdict.detail) == ("MISMATCH", ["0000000002.ts"], "missing 1")
    unreadable = judge(PERIOD, [stored(1, CIDS[0]), stored(2, CIDS[1], ""), stored(3, CIDS[2])], ROOT)
    assert unreadable.status == "MISMATCH"


def test_judge_extra_file_is_a_mismatch_even_when_every_cid_matches() -> None:
    verdict = judge(PERIOD, [stored(i + 1, CIDS[i]) for i in range(4)], ROOT)
    assert verdict.status == "MISMATCH"
    assert verdict.detail == "segment list differs from the anchored one"


def test_judge_unanchored_and_empty() -> None:
    assert judge(PERIOD, [stored(1, CIDS[0])], None).status == "UNANCHORED"
    assert judge(PERIOD, [], None).status == "EMPTY"
    assert judge(PERIOD, [], ROOT).status == "MISMATCH"


def proof_fixture() -> dict[str, Any]:
    first = [seg(i + 1, CIDS[i], T0 + timedelta(seconds=2 * i)) for i in range(3)]
    second = [seg(4 + i, CIDS[3 + i], T0 + MIN + timedelta(seconds=2 * i)) for i in range(2)]
    records = {r["_id"]: r for r in (record(first), record(second, T0 + MIN))}
    chain = {anchor_id("factory1", "cam1", T0): {"tx_hash": "0xabc", "block": 7}}
    return build_proof(
        "factory1",
        "cam1",
        {"sha256": "00" * 32, "size": 1},
        first[1:] + second[:1],  # the clip spans two periods
        records,
        chain,
        contract="0x" + "11" * 20,
        chain_id=31337,
    )


def test_proof_roundtrip_names_every_period() -> None:
    proof = proof_fixture()
    assert [s["seq"] for s in proof["segments"]] == [2, 3, 4]
    used = check_proof(proof)
    assert [(pid, root.hex()) for pid, _, root in used] == [
        (anchor_id("factory1", "cam1", T0), period_root(CIDS[:3]).hex()),
        (anchor_id("factory1", "cam1", T0 + MIN), period_root(CIDS[3:5]).hex()),
    ]
    period = proof["periods"][anchor_id("factory1", "cam1", T0)]
    assert (period["tx_hash"], period["block"]) == ("0xabc", 7)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["segments"][0].update(cid=CIDS[4]), "is not in period"),
        (lambda p: p["segments"][1]["proof"][0].__setitem__(1, "00" * 32), "is not in period"),
        (lambda p: p["segments"][0].update(proof=None), "has no proof"),
        (lambda p: p.update(v=2), "unsupported proof version"),
        (lambda p: p["segments"][0].update(period="nope"), "malformed proof"),
        (lambda p: p["segments"][0]["proof"].append(["X", "zz"]), "malformed proof"),
        (lambda p: p.update(segments=[]), "lists no segments"),
        (lambda p: p.update(chain_id="31337"), "chain_id '31337' is not a positive integer"),
        (lambda p: p.update(chain_id=True), "chain_id True is not a positive integer"),
    ],
)
def test_tampered_proofs_are_refused(mutate: Any, message: str) -> None:
    proof = copy.deepcopy(proof_fixture())
    mutate(proof)
    with pytest.raises(ProofError, match=message):
        check_proof(proof)
