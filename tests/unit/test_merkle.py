"""Period roots and inclusion proofs (node/merkle.py): table tests and properties."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import BadCID
from node.ipfs_codec import cid_bytes
from node.merkle import inclusion_proof, leaf_hash, period_bounds, period_root, verify_inclusion

# Well-formed CIDv1 (raw, sha2-256) strings; only their bytes matter here.
CIDS = [
    "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
    "bafkreiabo4kdm6ssrgzl5aqcwhymmpljfmdyrhwjqzq3bs7ncdqvoiyxse",
    "bafkreid7qoywk77r7rj3slobqfekdvs57qwuwh5d2z3sqsw52iabe3mqne",
    "bafkreibwwjbudixamzfy2dsfdtvawtnq5ud4hfqqnkzyqb4boxdjhhkdbm",
    "bafkreib5xbvv26gcbedksx4jdfyvuvcbtbk2bm3h6itx46b7vwsnhmxmyq",
]
V0 = "QmYjtig7VJQ6XsnUjqqJvj7QaMcCAwtrgNdahSiFofrE7o"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(cid: str) -> bytes:
    return sha(b"\x00" + cid_bytes(cid))


def node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01" + left + right)


a, b, c, d, e = (leaf(cid) for cid in CIDS)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, a),
        (2, node(a, b)),
        (3, node(node(a, b), c)),  # c carried up, never paired with itself
        (4, node(node(a, b), node(c, d))),
        (5, node(node(node(a, b), node(c, d)), e)),
    ],
)
def test_root_table(count: int, expected: bytes) -> None:
    assert period_root(CIDS[:count]) == expected


def test_no_segments_no_root() -> None:
    with pytest.raises(ValueError, match="at least one"):
        period_root([])


def test_leaf_is_over_the_binary_cid_and_v0_equals_its_v1_form() -> None:
    assert leaf_hash(CIDS[0]) == sha(b"\x00" + cid_bytes(CIDS[0]))
    assert cid_bytes(V0)[:2] == b"\x01\x70" and len(cid_bytes(V0)) == 36
    with pytest.raises(BadCID):
        leaf_hash("not-a-cid")


def test_order_and_duplication_change_the_root() -> None:
    assert period_root(CIDS[:3]) != period_root([CIDS[1], CIDS[0], CIDS[2]])
    assert period_root(CIDS[:3]) != period_root([*CIDS[:3], CIDS[2]])  # [a b c] vs [a b c c]
    assert period_root(CIDS[:2]) != node(a, a)


@given(st.integers(1, 40), st.data())
@settings(max_examples=60, deadline=None)
def test_every_segment_proves_its_membership_and_only_its_own(count: int, data: st.DataObject) -> None:
    cids = (CIDS * (count // len(CIDS) + 1))[:count]
    root = period_root(cids)
    index = data.draw(st.integers(0, count - 1))
    proof = inclusion_proof(cids, index)
    assert verify_inclusion(cids[index], proof, root)
    other = next((cid for cid in CIDS if cid != cids[index]), None)
    assert other is not None and not verify_inclusion(other, proof, root)
    if proof:
        side, sibling = proof[0]
        flipped = bytes([sibling[0] ^ 1]) + sibling[1:]
        assert not verify_inclusion(cids[index], [(side, flipped), *proof[1:]], root)


def test_proof_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        inclusion_proof(CIDS, 5)


@pytest.mark.parametrize(
    ("instant", "period_s", "start"),
    [
        (datetime(2026, 11, 21, 10, 59, 59, tzinfo=UTC), 3600, datetime(2026, 11, 21, 10, tzinfo=UTC)),
        (datetime(2026, 11, 21, 11, 0, 0, tzinfo=UTC), 3600, datetime(2026, 11, 21, 11, tzinfo=UTC)),
        (datetime(2026, 11, 21, 10, 7, 30, tzinfo=UTC), 60, datetime(2026, 11, 21, 10, 7, tzinfo=UTC)),
        (datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC), 86400, datetime(2026, 11, 21, tzinfo=UTC)),
    ],
)
def test_period_bounds(instant: datetime, period_s: int, start: datetime) -> None:
    assert period_bounds(instant, period_s) == (start, start + timedelta(seconds=period_s))


@pytest.mark.parametrize("period_s", [0, 59, 7, 7000, 86401])
def test_period_length_must_tile_the_day(period_s: int) -> None:
    with pytest.raises(ValueError, match="period_s"):
        period_bounds(datetime(2026, 11, 21, tzinfo=UTC), period_s)


def test_period_bounds_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_bounds(datetime(2026, 11, 21), 3600)
