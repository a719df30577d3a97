"""The segment announcement: what a producer publishes on pubsub and mirrors verify.

Pure functions only. Wire format: compact JSON, at most 4 KiB, with the fields
``v, producer, factory, device, session, seq, cid, filename, start, duration,
size, sig`` and, for an encrypted segment only, ``key_id`` and ``iv`` (both or
neither; see :mod:`node.segcrypt`). ``sig`` is Ed25519 over the canonical bytes
of all other fields present: JSON with sorted keys, no whitespace, UTF-8, so a
plaintext segment's announcement is byte for byte what it was before
encryption existed (``v`` stays 1). ``producer`` is the signer's raw 32-byte
public key in unpadded base64url (its key id). For an encrypted segment,
``cid`` and ``size`` are those of the ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from node.errors import BadCID
from node.ipfs_codec import parse_cid
from node.segcrypt import IV_HEX
from node.segcrypt import KEY_ID as SEGMENT_KEY_ID

VERSION = 1
MAX_BYTES = 4096
MAX_SEGMENT_BYTES = 256 << 20
MAX_SEGMENT_SECONDS = 60.0
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SESSION = re.compile(r"[0-9]{8}T[0-9]{6}Z(-[0-9]+)?")
FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.ts")
KEY_ID = re.compile(r"[A-Za-z0-9_-]{43}")
SIG = re.compile(r"[A-Za-z0-9_-]{86}")


class AnnouncementError(ValueError):
    """A message that is not a valid announcement; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Announcement:
    v: int
    producer: str
    factory: str
    device: str
    session: str
    seq: int
    cid: str
    filename: str
    start: str  # UTC, ISO 8601 with milliseconds and Z: 2026-11-21T06:27:05.120Z
    duration: float  # seconds, at most 3 decimals
    size: int
    sig: str = ""
    key_id: str | None = None  # the segment's content key (encrypted segments only) ...
    iv: str | None = None  # ... and its AES-CBC IV, 32 lowercase hex characters

    def unsigned_fields(self) -> dict[str, Any]:
        fields = self.wire_fields()
        del fields["sig"]
        return fields

    def wire_fields(self) -> dict[str, Any]:
        """The fields as sent: the optional ones only when set."""
        return {k: v for k, v in asdict(self).items() if k not in OPTIONAL or v is not None}

    @property
    def encrypted(self) -> bool:
        return self.key_id is not None

    @property
    def start_time(self) -> datetime:
        return parse_start(self.start)


OPTIONAL = frozenset({"key_id", "iv"})
FIELDS = frozenset(f.name for f in fields(Announcement)) - OPTIONAL  # always present


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("invalid base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def from_document(doc: Mapping[str, Any]) -> Announcement:
    """The signed announcement a catalog segment document was made from.

    The catalog keeps every announcement field (``start`` as a datetime); the
    result verifies with :func:`decode` exactly when the document is unaltered.
    KeyError or TypeError when a field is missing or of the wrong kind.
    """
    fields = {name: doc[name] for name in FIELDS}
    fields.update({name: doc[name] for name in OPTIONAL if doc.get(name) is not None})
    start = fields["start"]
    if isinstance(start, datetime):
        fields["start"] = format_start(start if start.tzinfo else start.replace(tzinfo=UTC))
    return Announcement(**fields)


def format_start(moment: datetime) -> str:
    """The announcement's time format: UTC with milliseconds and a Z suffix."""
    if moment.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_start(text: str) -> datetime:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", text):
        raise ValueError(f"start {text!r} is not YYYY-MM-DDTHH:MM:SS.mmmZ")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    return b64url(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_id(identifier: str) -> Ed25519PublicKey:
    if not KEY_ID.fullmatch(identifier):
        raise ValueError(f"{identifier!r} is not a producer key id (43 base64url characters)")
    return Ed25519PublicKey.from_public_bytes(unb64url(identifier))


def sign(announcement: Announcement, private_key: Ed25519PrivateKey) -> Announcement:
    """Return the announcement with ``producer`` set to the key's id and ``sig`` filled in."""
    fields = announcement.unsigned_fields()
    fields["producer"] = key_id(private_key.public_key())
    signature = private_key.sign(canonical_bytes(fields))
    return Announcement(**fields, sig=b64url(signature))


def encode(announcement: Announcement) -> bytes:
    if not announcement.sig:
        raise ValueError("announcement is not signed")
    data = canonical_bytes(announcement.wire_fields())
    if len(data) > MAX_BYTES:
        raise ValueError(f"announcement is {len(data)} bytes, the limit is {MAX_BYTES}")
    return data


def _require(condition: bool, reason: str, detail: str) -> None:
    if not condition:
        raise AnnouncementError(reason, detail)


def _check_schema(obj: Any) -> Announcement:
    _require(isinstance(obj, dict), "schema", "not a JSON object")
    keys = set(obj)
    odd = (FIELDS - keys) | (keys - FIELDS - OPTIONAL)
    _require(not odd, "schema", f"fields {sorted(odd)} missing or unexpected")
    _require(
        "key_id" in keys or "iv" not in keys, "schema", "iv without key_id (an encrypted segment has both)"
    )
    _require(
        "iv" in keys or "key_id" not in keys, "schema", "key_id without iv (an encrypted segment has both)"
    )
    _require(obj["v"] == VERSION and type(obj["v"]) is int, "version", f"unsupported version {obj['v']!r}")
    for name, pattern in (
        ("producer", KEY_ID),
        ("factory", NAME),
        ("device", NAME),
        ("session", SESSION),
        ("filename", FILENAME),
        ("sig", SIG),
        ("key_id", SEGMENT_KEY_ID),
        ("iv", IV_HEX),
    ):
        if name in OPTIONAL and name not in obj:
            continue
        value = obj[name]
        _require(isinstance(value, str) and pattern.fullmatch(value) is not None, "schema", f"bad {name}")
    for name in ("seq", "size"):
        _require(type(obj[name]) is int, "schema", f"{name} must be an integer")
    _require(0 <= obj["seq"] < 2**53, "schema", "seq out of range")
    _require(0 < obj["size"] <= MAX_SEGMENT_BYTES, "schema", "size out of range")
    duration = obj["duration"]
    _require(type(duration) in (int, float), "schema", "duration must be a number")
    _require(0 < duration <= MAX_SEGMENT_SECONDS, "schema", "duration out of range")
    _require(round(duration, 3) == duration, "schema", "duration has more than 3 decimals")
    _require(isinstance(obj["start"], str), "schema", "start must be a string")
    _require(isinstance(obj["cid"], str), "schema", "cid must be a string")
    try:
        parse_start(obj["start"])
        parse_cid(obj["cid"])
    except (ValueError, BadCID) as exc:
        raise AnnouncementError("schema", str(exc)) from None
    return Announcement(**{**obj, "duration": float(duration)})


def decode(data: bytes, trusted: dict[str, Ed25519PublicKey]) -> Announcement:
    """Parse and verify a pubsub payload; raise AnnouncementError naming the first failed check.

    Checks in order: size, JSON, schema, known producer key, signature.
    ``trusted`` maps allow-listed key ids to their public keys.
    """
    _require(len(data) <= MAX_BYTES, "too_large", f"{len(data)} bytes")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # "[[[[..." nests past the parser
        raise AnnouncementError("bad_json", str(exc) or type(exc).__name__) from None
    announcement = _check_schema(obj)
    key = trusted.get(announcement.producer)
    _require(key is not None, "unknown_producer", announcement.producer)
    assert key is not None
    try:
        signature = unb64url(announcement.sig)
        key.verify(signature, canonical_bytes({k: v for k, v in obj.items() if k != "sig"}))
    except (InvalidSignature, ValueError, binascii.Error):
        raise AnnouncementError(
            "bad_signature", f"seq {announcement.seq} of {announcement.producer}"
        ) from None
    return announcement
