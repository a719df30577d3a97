"""Shared test material: a signed announcement to vary, and config files written for a test."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import announce
from node.announce import Announcement

T = TypeVar("T")

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = {announce.key_id(KEY.public_key()): KEY.public_key()}
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
OTHER_CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # a second, different CID (v0)
START_TEXT = "2026-11-21T06:27:05.120Z"


def draft(**changes: Any) -> Announcement:
    """An unsigned announcement of seq 41 of factory1/cam1, with ``changes`` applied."""
    base = Announcement(
        v=1,
        producer="",
        factory="factory1",
        device="cam1",
        session="20261121T062705Z",
        seq=41,
        cid=CID,
        filename="seg-000041.ts",
        start=START_TEXT,
        duration=2.002,
        size=1_048_576,
    )
    return replace(base, **changes)


def signed(key: Ed25519PrivateKey = KEY, **changes: Any) -> bytes:
    return announce.encode(announce.sign(draft(**changes), key))


def tamper(data: bytes, **changes: Any) -> bytes:
    """The encoded announcement with fields replaced after signing."""
    obj = json.loads(data)
    obj.update(changes)
    return json.dumps(obj).encode()


def load_text(tmp_path: Path, name: str, text: str, loader: Callable[[Path], T]) -> T:
    """Write ``text`` as ``name`` in ``tmp_path`` and load it with ``loader``."""
    path = tmp_path / name
    path.write_text(text)
    return loader(path)
