from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import announce
from node.announce import AnnouncementError
from tests.unit.samples import CID, KEY, OTHER, OTHER_CID, TRUSTED, draft, signed, tamper

KEY_ID = "k" + "A" * 22
IV = "00112233445566778899aabbccddeeff"


def _stripped(data: bytes) -> bytes:
    """An encrypted segment's announcement passed off as a plaintext one."""
    obj = json.loads(data)
    del obj["key_id"], obj["iv"]
    return json.dumps(obj).encode()


def test_round_trip() -> None:
    data = signed()
    assert len(data) < announce.MAX_BYTES
    got = announce.decode(data, TRUSTED)
    assert got.producer == announce.key_id(KEY.public_key())
    assert (got.seq, got.cid, got.duration) == (41, CID, 2.002)
    assert got.start_time == datetime(2026, 11, 21, 6, 27, 5, 120000, tzinfo=UTC)


def test_canonical_bytes_are_sorted_and_compact() -> None:
    assert announce.canonical_bytes({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"x" * 5000, "too_large", id="too-large"),
        pytest.param(b"\xff\xfe", "bad_json", id="not-utf8"),
        pytest.param(b"{not json", "bad_json", id="not-json"),
        pytest.param(b"[]", "schema", id="not-object"),
        pytest.param(tamper(signed(), extra=1), "schema", id="extra-field"),
        pytest.param(b"[" * 4000, "bad_json", id="nested-too-deep"),
        pytest.param(tamper(signed(), v=2), "version", id="version"),
        pytest.param(tamper(signed(), seq=-1), "schema", id="negative-seq"),
        pytest.param(tamper(signed(), seq=True), "schema", id="bool-seq"),
        pytest.param(tamper(signed(), seq="41"), "schema", id="string-seq"),
        pytest.param(tamper(signed(), filename="../../etc/passwd"), "schema", id="path-traversal"),
        pytest.param(tamper(signed(), filename="a.mp4"), "schema", id="not-ts"),
        pytest.param(tamper(signed(), device="cam 1"), "schema", id="bad-device"),
        pytest.param(tamper(signed(), cid="QmNope"), "schema", id="bad-cid"),
        pytest.param(tamper(signed(), start="2026-11-21 06:27:05"), "schema", id="bad-start"),
        pytest.param(tamper(signed(), duration=0), "schema", id="zero-duration"),
        pytest.param(tamper(signed(), duration=1.23456), "schema", id="duration-precision"),
        pytest.param(tamper(signed(), size=0), "schema", id="zero-size"),
        pytest.param(tamper(signed(), seq=42), "bad_signature", id="tampered-seq"),
        pytest.param(
            tamper(signed(), cid=OTHER_CID),
            "bad_signature",
            id="tampered-cid",
        ),
        pytest.param(announce.encode(announce.sign(draft(), OTHER)), "unknown_producer", id="unknown-key"),
        pytest.param(tamper(signed(), key_id=KEY_ID), "schema", id="key-id-without-iv"),
        pytest.param(tamper(signed(), iv=IV), "schema", id="iv-without-key-id"),
        pytest.param(tamper(signed(), key_id=None, iv=None), "schema", id="null-key-fields"),
        pytest.param(tamper(signed(key_id=KEY_ID, iv=IV), iv=IV.upper()), "schema", id="iv-uppercase"),
        pytest.param(tamper(signed(key_id=KEY_ID, iv=IV), iv=IV[:-2]), "schema", id="iv-short"),
        pytest.param(tamper(signed(key_id=KEY_ID, iv=IV), key_id="k/../x"), "schema", id="key-id-path"),
        pytest.param(tamper(signed(key_id=KEY_ID, iv=IV), iv="f" * 32), "bad_signature", id="tampered-iv"),
        pytest.param(
            tamper(signed(key_id=KEY_ID, iv=IV), key_id="k" + "B" * 22), "bad_signature", id="tampered-key-id"
        ),
        pytest.param(_stripped(signed(key_id=KEY_ID, iv=IV)), "bad_signature", id="key-fields-stripped"),
    ],
)
def test_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(AnnouncementError) as info:
        announce.decode(payload, TRUSTED)
    assert info.value.reason == reason


def test_key_claimed_by_another_producer_fails_signature() -> None:
    forged = tamper(
        announce.encode(announce.sign(draft(), OTHER)), producer=announce.key_id(KEY.public_key())
    )
    with pytest.raises(AnnouncementError) as info:
        announce.decode(forged, TRUSTED)
    assert info.value.reason == "bad_signature"


def test_plaintext_announcement_bytes_are_unchanged_by_the_optional_fields() -> None:
    """Old messages (and the catalog documents made from them) keep verifying: v stays 1."""
    obj = json.loads(signed())
    assert "key_id" not in obj and "iv" not in obj
    assert set(obj) == announce.FIELDS


def test_encrypted_round_trip_covers_key_fields() -> None:
    got = announce.decode(signed(key_id=KEY_ID, iv=IV), TRUSTED)
    assert (got.key_id, got.iv, got.encrypted) == (KEY_ID, IV, True)
    assert not announce.decode(signed(), TRUSTED).encrypted


def test_from_document_keeps_key_fields() -> None:
    got = announce.decode(signed(key_id=KEY_ID, iv=IV), TRUSTED)
    doc = {**got.wire_fields(), "start": got.start_time, "end": got.start_time, "sha256": "x"}
    rebuilt = announce.from_document(doc)
    assert announce.decode(announce.encode(rebuilt), TRUSTED) == got
    plain = announce.decode(signed(), TRUSTED)
    doc = {**plain.wire_fields(), "start": plain.start_time, "key_id": None}
    assert announce.from_document(doc) == plain


def test_unsigned_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="not signed"):
        announce.encode(draft())


def test_key_id_round_trip() -> None:
    identifier = announce.key_id(KEY.public_key())
    assert len(identifier) == 43
    assert announce.key_id(announce.public_key_from_id(identifier)) == identifier
    with pytest.raises(ValueError, match="key id"):
        announce.public_key_from_id("short")


def test_format_start() -> None:
    moment = datetime(2026, 11, 21, 8, 27, 5, 120999, tzinfo=timezone(timedelta(hours=2)))
    assert announce.format_start(moment) == "2026-11-21T06:27:05.120Z"
    with pytest.raises(ValueError, match="timezone"):
        announce.format_start(datetime(2026, 1, 1))


@given(
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    duration_ms=st.integers(min_value=1, max_value=60_000),
    size=st.integers(min_value=1, max_value=announce.MAX_SEGMENT_BYTES),
    device=st.from_regex(announce.NAME, fullmatch=True),
)
def test_any_valid_announcement_round_trips(seq: int, duration_ms: int, size: int, device: str) -> None:
    unsigned = draft(seq=seq, duration=duration_ms / 1000, size=size, device=device)
    got = announce.decode(announce.encode(announce.sign(unsigned, KEY)), TRUSTED)
    assert replace(got, sig="", producer="") == replace(unsigned, sig="", producer="")
