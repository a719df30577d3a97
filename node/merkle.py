"""Period roots: the segments of one camera over one period, reduced to 32 bytes.

A period's root is what gets anchored on Ethereum (issue 6). It is a binary Merkle
tree over the period's segment CIDs in seq order, with domain-separated hashes
(SHA-256) so a leaf can never pass for an inner node, and an odd node carried up
unchanged (never paired with itself, so two different lists cannot share a root
the way Bitcoin's duplicated-last-node trees can):

    leaf(cid)   = SHA256(0x00 || binary CIDv1)
    node(l, r)  = SHA256(0x01 || l || r)

Inclusion proofs let an exported clip be checked against an anchored root
without the rest of the period. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from node.ipfs_codec import cid_bytes

Side = Literal["L", "R"]
ProofStep = tuple[Side, bytes]  # the sibling's hash and which side it sits on


def leaf_hash(cid: str) -> bytes:
    """The leaf of one segment (BadCID for a malformed CID)."""
    return hashlib.sha256(b"\x00" + cid_bytes(cid)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(cids: Sequence[str]) -> list[list[bytes]]:
    if not cids:
        raise ValueError("a period root needs at least one segment")
    level = [leaf_hash(cid) for cid in cids]
    levels = [level]
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])  # carried up unchanged
        level = paired
        levels.append(level)
    return levels


def period_root(cids: Sequence[str]) -> bytes:
    """The root of the period's segment CIDs, given in seq order."""
    return _levels(cids)[-1][0]


def inclusion_proof(cids: Sequence[str], index: int) -> list[ProofStep]:
    """The sibling hashes from ``cids[index]``'s leaf up to the root."""
    if not 0 <= index < len(cids):
        raise IndexError(f"segment index {index} outside 0..{len(cids) - 1}")
    proof: list[ProofStep] = []
    for level in _levels(cids)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(("L" if sibling < index else "R", level[sibling]))
        index //= 2
    return proof


def verify_inclusion(cid: str, proof: Sequence[ProofStep], root: bytes) -> bool:
    """Whether ``cid`` with ``proof`` leads to ``root``."""
    value = leaf_hash(cid)
    for side, sibling in proof:
        if side not in ("L", "R") or len(sibling) != 32:
            return False
        value = _node(sibling, value) if side == "L" else _node(value, sibling)
    return value == root


def period_bounds(instant: datetime, period_s: int) -> tuple[datetime, datetime]:
    """The period holding ``instant`` (UTC): periods tile each UTC day from midnight."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    if not 60 <= period_s <= 86400 or 86400 % period_s:
        raise ValueError(f"period_s must divide a day and be 60..86400 s, got {period_s}")
    moment = instant.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    index = int((moment - midnight).total_seconds()) // period_s
    start = midnight + timedelta(seconds=index * period_s)
    return start, start + timedelta(seconds=period_s)
