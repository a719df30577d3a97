"""Pure encoding helpers for talking to Kubo: multibase, CIDs, pubsub messages.

No I/O here, so every rule is a plain function tested in tests/unit.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from node.errors import BadCID

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
# The stdlib's urlsafe decoder silently skips foreign characters; we refuse them.
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

# Multicodecs a CIDv1 may carry in camswarm (dag-pb, raw, dag-cbor, dag-json, libp2p-key).
_KNOWN_CODECS = {0x70, 0x55, 0x71, 0x0129, 0x72}
# Multihash functions: identity, sha2-256, sha2-512, sha3-256, blake2b-256, blake3.
_KNOWN_HASHES = {0x00, 0x12, 0x13, 0x16, 0xB220, 0x1E}


def multibase_encode(data: bytes) -> str:
    """Base64url without padding, with the multibase prefix ``u`` (Kubo's pubsub encoding)."""
    return "u" + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string; base64url (``u``), base64 (``m``) and base32 (``b``) are accepted."""
    if not text:
        raise ValueError("empty multibase string")
    prefix, body = text[0], text[1:]
    padding = "=" * (-len(body) % 4)
    try:
        if prefix == "u":
            if not _BASE64URL.fullmatch(body):
                raise ValueError("invalid base64url character")
            return base64.urlsafe_b64decode(body + padding)
        if prefix == "m":
            return base64.b64decode(body + padding, validate=True)
        if prefix == "b":
            return base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid multibase {prefix!r} payload: {exc}") from exc
    raise ValueError(f"unsupported multibase prefix {prefix!r}")


def encode_topic(topic: str) -> str:
    """Kubo >= 0.11 expects pubsub topics multibase-encoded in the ``arg`` parameter."""
    if not topic:
        raise ValueError("pubsub topic must not be empty")
    return multibase_encode(topic.encode("utf-8"))


def _b58decode(text: str) -> bytes:
    value = 0
    for ch in text:
        try:
            value = value * 58 + _B58_INDEX[ch]
        except KeyError:
            raise BadCID(f"invalid base58 character {ch!r}") from None
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    leading = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading + raw


def _b36decode(text: str) -> bytes:
    try:
        value = int(text, 36)
    except ValueError:
        raise BadCID("invalid base36 text") from None
    if text != text.lower():
        raise BadCID("base36 CIDs are lower case")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    leading = len(text) - len(text.lstrip("0"))
    return b"\x00" * leading + raw


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise BadCID("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise BadCID("varint too long")


def _check_multihash(data: bytes, pos: int) -> None:
    code, pos = _read_varint(data, pos)
    length, pos = _read_varint(data, pos)
    if code not in _KNOWN_HASHES:
        raise BadCID(f"unknown multihash function 0x{code:x}")
    if len(data) - pos != length:
        raise BadCID(f"multihash digest is {len(data) - pos} bytes, header says {length}")


def parse_cid(text: str) -> str:
    """Validate a CID string: v0 (base58btc ``Qm...``) or v1 in base32, base58btc or base36.

    Returns the CID unchanged; raises :class:`BadCID` with the reason otherwise.
    """
    if not isinstance(text, str) or not text:
        raise BadCID("empty CID")
    cid = text.strip()
    if cid != text or "/" in cid:
        raise BadCID(f"not a bare CID: {text!r}")
    if len(cid) == 46 and cid.startswith("Qm"):
        raw = _b58decode(cid)
        if raw[:2] != b"\x12\x20" or len(raw) != 34:
            raise BadCID(f"{cid!r} is not a sha2-256 CIDv0")
        return cid
    raw = _cid_v1_bytes(cid)
    version, pos = _read_varint(raw, 0)
    if version != 1:
        raise BadCID(f"{cid!r}: CID version {version} is not supported")
    codec, pos = _read_varint(raw, pos)
    if codec not in _KNOWN_CODECS:
        raise BadCID(f"{cid!r}: unknown content codec 0x{codec:x}")
    _check_multihash(raw, pos)
    return cid


@dataclass(frozen=True)
class PubsubMessage:
    """One message from ``/api/v0/pubsub/sub``, decoded to raw bytes."""

    sender: str
    data: bytes
    seqno: bytes
    topics: tuple[str, ...]


def decode_pubsub_message(obj: Any) -> PubsubMessage:
    """Decode one NDJSON record of a Kubo pubsub subscription.

    Kubo omits ``data`` for an empty payload, so a missing key means ``b""``.
    Raises ValueError for records that are not messages.
    """
    if not isinstance(obj, dict):
        raise ValueError("pubsub record is not a JSON object")
    sender = obj.get("from")
    if not isinstance(sender, str):
        raise ValueError("pubsub record has no 'from'")
    raw_data = obj.get("data", "")
    raw_seqno = obj.get("seqno", "")
    raw_topics = obj.get("topicIDs", [])
    if not isinstance(raw_data, str) or not isinstance(raw_seqno, str) or not isinstance(raw_topics, list):
        raise ValueError("pubsub record fields have the wrong types")
    data = multibase_decode(raw_data) if raw_data else b""
    seqno = multibase_decode(raw_seqno) if raw_seqno else b""
    topics = tuple(multibase_decode(t).decode("utf-8") for t in raw_topics if isinstance(t, str))
    return PubsubMessage(sender=sender, data=data, seqno=seqno, topics=topics)


def _cid_v1_bytes(cid: str) -> bytes:
    """The bytes of a CIDv1 string in base32, base58btc or base36 (not yet checked)."""
    prefix, body = cid[0], cid[1:]
    try:
        if prefix == "b":
            return base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        if prefix == "z":
            return _b58decode(body)
        if prefix == "k":
            return _b36decode(body)
    except BadCID:
        raise
    except (binascii.Error, ValueError) as exc:
        raise BadCID(f"{cid!r}: {exc}") from exc
    raise BadCID(f"{cid!r}: unsupported CID encoding prefix {prefix!r}")


def cid_bytes(text: str) -> bytes:
    """The binary CIDv1 of a valid CID string, whatever its text encoding.

    A CIDv0 (``Qm...``) becomes its CIDv1 dag-pb form, so the same content always
    gives the same bytes (what integrity roots are computed over).
    """
    cid = parse_cid(text)
    if len(cid) == 46 and cid.startswith("Qm"):
        return b"\x01\x70" + _b58decode(cid)
    return _cid_v1_bytes(cid)
