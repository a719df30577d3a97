from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror import admission
from mirror.admission import REASONS, Limits, RejectCounter, Rejected
from node import announce
from node.announce import Announcement
from tests.unit.samples import CID, KEY, OTHER, OTHER_CID, TRUSTED, draft, signed, tamper

START = datetime(2026, 11, 21, 6, 27, 5, 120000, tzinfo=UTC)
NOW = START + timedelta(seconds=10)


def _resign(obj: dict[str, Any]) -> bytes:
    """Sign an arbitrary object with the trusted key, so it reaches the checks after the signature."""
    obj = {**obj, "producer": announce.key_id(KEY.public_key())}
    obj.pop("sig", None)
    obj["sig"] = announce.b64url(KEY.sign(announce.canonical_bytes(obj)))
    return json.dumps(obj).encode()


@dataclass
class Store:
    """An in-memory stand-in for the mirror's store and configuration."""

    segments: set[tuple[str, str, int]] = field(default_factory=set)
    wanted: set[tuple[str, str]] = field(default_factory=lambda: {("factory1", "cam1")})
    lookups: int = 0

    def stored(self, factory: str, device: str, seq: int) -> bool:
        self.lookups += 1
        return (factory, device, seq) in self.segments

    def highest(self, factory: str, device: str) -> int | None:
        self.lookups += 1
        seqs = [s for f, d, s in self.segments if (f, d) == (factory, device)]
        return max(seqs, default=None)

    def wants(self, factory: str, device: str) -> bool:
        return (factory, device) in self.wanted

    def admission(self, limits: Limits = admission.DEFAULT_LIMITS) -> admission.Admission:
        return admission.Admission(TRUSTED, self.stored, self.highest, self.wants, limits)


def _admit(
    data: bytes, store: Store | None = None, now: datetime = NOW, limits: Limits = admission.DEFAULT_LIMITS
) -> Announcement:
    store = Store() if store is None else store
    return store.admission(limits).admit(data, now)


def _reason(data: bytes, store: Store | None = None, **kwargs: Any) -> str:
    with pytest.raises(Rejected) as info:
        _admit(data, store, **kwargs)
    assert info.value.reason in REASONS
    return info.value.reason


def _stored_up_to(highest: int) -> Store:
    return Store(segments={("factory1", "cam1", highest)})


def test_valid_message_is_admitted() -> None:
    store = _stored_up_to(40)
    got = _admit(signed(), store)
    assert got == announce.decode(signed(), TRUSTED)
    assert (got.producer, got.seq, got.cid) == (announce.key_id(KEY.public_key()), 41, CID)
    assert store.lookups == 2


def test_first_segment_of_a_camera_is_admitted() -> None:
    assert _admit(signed(seq=9_000_000), Store()).seq == 9_000_000


def test_reasons_are_documented_in_check_order() -> None:
    assert REASONS[: len(admission.DECODE_REASONS)] == admission.DECODE_REASONS
    assert len(set(REASONS)) == len(REASONS)
    assert {"replay", "bad_time", "unwanted", "bad_filename"} <= set(REASONS)
    assert admission.BENIGN.issubset(REASONS)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(signed() + b" " * (announce.MAX_BYTES + 1 - len(signed())), "too_large", id="oversize"),
        pytest.param(b"x" * 5000, "too_large", id="oversize-garbage"),
        pytest.param(b'{"v":1,', "bad_json", id="malformed-json"),
        pytest.param(b"\xff\xfe", "bad_json", id="not-utf8"),
        pytest.param(b"[" * 4000, "bad_json", id="nested-too-deeply"),
        pytest.param(b"{}", "schema", id="empty-object"),
        pytest.param(tamper(signed(), v=2), "version", id="version"),
        pytest.param(signed(OTHER), "unknown_producer", id="unknown-key"),
        pytest.param(tamper(signed(), cid=OTHER_CID), "bad_signature", id="altered-cid"),
        pytest.param(tamper(signed(), seq=42), "bad_signature", id="altered-seq"),
        pytest.param(tamper(signed(OTHER), producer=next(iter(TRUSTED))), "bad_signature", id="stolen-id"),
        # decode's pattern already refuses a path, before the signature is looked at.
        pytest.param(signed(filename="../../etc/passwd"), "schema", id="path-like-filename"),
        pytest.param(signed(filename="a..ts"), "bad_filename", id="dot-dot-filename"),
        pytest.param(
            signed(start=announce.format_start(NOW + timedelta(seconds=301))), "bad_time", id="future"
        ),
        pytest.param(signed(start=announce.format_start(NOW - timedelta(days=41))), "bad_time", id="too-old"),
        pytest.param(tamper(signed(), duration=0), "schema", id="zero-duration"),
        pytest.param(tamper(signed(), duration=61), "schema", id="long-duration"),
    ],
)
def test_rejects(payload: bytes, reason: str) -> None:
    assert len(payload) <= announce.MAX_BYTES or reason == "too_large"
    assert _reason(payload, _stored_up_to(40)) == reason


def test_decode_rejections_carry_no_announcement() -> None:
    with pytest.raises(Rejected) as info:
        _admit(signed(OTHER))
    assert info.value.announcement is None
    assert info.value.detail == announce.key_id(OTHER.public_key())
    assert not info.value.benign


def test_replay_of_a_stored_seq() -> None:
    store = _stored_up_to(41)
    with pytest.raises(Rejected) as info:
        _admit(signed(), store)
    assert info.value.reason == "replay"
    assert info.value.announcement is not None
    assert info.value.announcement.seq == 41
    assert not info.value.benign


def test_same_seq_of_another_camera_is_not_a_replay() -> None:
    store = Store(segments={("factory1", "cam2", 41)}, wanted={("factory1", "cam1"), ("factory1", "cam2")})
    assert _admit(signed(), store).seq == 41


@pytest.mark.parametrize(
    ("highest", "seq", "admitted"),
    [
        pytest.param(41, 41 + 100_000, True, id="ahead-at-limit"),
        pytest.param(41, 41 + 100_001, False, id="far-ahead"),
        pytest.param(41, 2**53 - 1, False, id="max-seq"),
        pytest.param(60_000, 10_000, True, id="behind-at-limit"),
        pytest.param(60_000, 9_999, False, id="far-behind"),
        pytest.param(60_000, 59_999, True, id="late-segment"),
    ],
)
def test_seq_window(highest: int, seq: int, admitted: bool) -> None:
    payload = signed(seq=seq)
    if admitted:
        assert _admit(payload, _stored_up_to(highest)).seq == seq
    else:
        assert _reason(payload, _stored_up_to(highest)) == "replay"


def test_seq_window_follows_limits() -> None:
    limits = Limits(max_seq_ahead=5, max_seq_behind=0)
    assert _admit(signed(seq=45), _stored_up_to(40), limits=limits).seq == 45
    assert _reason(signed(seq=46), _stored_up_to(40), limits=limits) == "replay"
    assert _reason(signed(seq=39), _stored_up_to(40), limits=limits) == "replay"


@pytest.mark.parametrize(
    ("offset", "admitted"),
    [
        pytest.param(timedelta(seconds=300), True, id="future-at-limit"),
        pytest.param(timedelta(seconds=301), False, id="far-future"),
        pytest.param(timedelta(days=3650), False, id="next-decade"),
        pytest.param(-timedelta(days=40), True, id="age-at-limit"),
        pytest.param(-timedelta(days=40, seconds=1), False, id="too-old"),
        pytest.param(-timedelta(days=365 * 1000), False, id="ancient"),
    ],
)
def test_start_window(offset: timedelta, admitted: bool) -> None:
    payload = signed(start=announce.format_start(NOW + offset))
    if admitted:
        assert _admit(payload).start_time == NOW + offset
    else:
        assert _reason(payload) == "bad_time"


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"])
def test_extreme_starts_are_bad_time(start: str) -> None:
    assert _reason(signed(start=start)) == "bad_time"


def test_start_window_holds_for_other_time_zones_of_now() -> None:
    now = NOW.astimezone(timezone(timedelta(hours=-7)))
    assert _admit(signed(start=announce.format_start(NOW + timedelta(seconds=300))), now=now)


def test_duration_beyond_the_mirror_limit() -> None:
    assert _reason(signed(duration=2.002), limits=Limits(max_duration_s=2.0)) == "bad_time"
    assert _admit(signed(duration=2.0), limits=Limits(max_duration_s=2.0)).duration == 2.0


def test_path_like_filename_is_refused_by_the_mirror_check_too() -> None:
    for name in ("../../etc/passwd", "../../etc/passwd.ts", "sub/seg.ts", "a..ts", ".ts", "seg.mp4"):
        ann = announce.sign(draft(filename=name), KEY)
        with pytest.raises(Rejected) as info:
            Store().admission().check(ann, NOW)
        assert info.value.reason == "bad_filename", name


def test_unreadable_start_is_bad_time_in_the_mirror_check() -> None:
    ann = announce.sign(draft(start="yesterday"), KEY)
    with pytest.raises(Rejected) as info:
        Store().admission().check(ann, NOW)
    assert info.value.reason == "bad_time"


def test_unwanted_camera_is_benign_and_skips_the_store() -> None:
    store = Store(segments={("factory1", "cam1", 41)}, wanted=set())
    with pytest.raises(Rejected) as info:
        _admit(signed(), store)
    assert info.value.reason == "unwanted"
    assert info.value.benign
    assert info.value.announcement is not None
    assert info.value.announcement.device == "cam1"
    assert store.lookups == 0


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _admit(signed(), now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        _admit(b"garbage", now=NOW.replace(tzinfo=None))


def test_limits_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_future_s"):
        Limits(max_future_s=-1)


def test_reject_counter() -> None:
    counter = RejectCounter()
    assert counter.snapshot() == dict.fromkeys(REASONS, 0)
    for payload in (signed(OTHER), signed(OTHER), b"{", signed()):
        try:
            _admit(payload, Store(wanted=set()))
        except Rejected as exc:
            counter.add(exc.reason)
    counter.add("something_new")
    snapshot = counter.snapshot()
    assert snapshot["unknown_producer"] == 2
    assert snapshot["bad_json"] == 1
    assert snapshot["unwanted"] == 1
    assert snapshot["something_new"] == 1
    assert counter["replay"] == 0
    assert len(counter) == len(REASONS) + 1
    assert set(counter) == {*REASONS, "something_new"}
    assert counter.total() == 5
    assert counter.total(include_benign=False) == 4
    snapshot["replay"] = 99
    assert counter["replay"] == 0
    with pytest.raises(ValueError, match="negative"):
        counter.add("replay", -1)


# --- fuzzing: whatever arrives on the topic, admit answers with Rejected or an Announcement.

_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text()
    | st.text(st.characters(categories=["Cs", "Nd", "Lu"]))  # lone surrogates survive json.dumps
)
_JSON = st.recursive(
    _JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)
_VALID = json.loads(signed())


def _admit_or_rejected(data: bytes, store: Store | None = None, now: datetime = NOW) -> Announcement | None:
    try:
        return _admit(data, store, now)
    except Rejected as exc:
        reason = exc.reason
    assert reason in REASONS
    return None


@settings(max_examples=300)
@given(st.binary(max_size=announce.MAX_BYTES + 64))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    assert _admit_or_rejected(data) is None


@given(_JSON)
def test_fuzz_arbitrary_json(value: Any) -> None:
    assert _admit_or_rejected(json.dumps(value).encode()) is None


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(announce.FIELDS)), _JSON, min_size=1), st.booleans())
def test_fuzz_fields_of_a_valid_message(changes: dict[str, Any], resign: bool) -> None:
    obj = {**_VALID, **changes}
    if resign:
        try:
            data = _resign(obj)
        except UnicodeEncodeError:  # a lone surrogate cannot be signed as UTF-8; still send it
            data = json.dumps(obj).encode()
    else:
        data = json.dumps(obj).encode()
    got = _admit_or_rejected(data, _stored_up_to(40))
    if got is not None:
        assert resign or announce.unb64url(got.sig) == announce.unb64url(_VALID["sig"])


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(signed())), st.binary(max_size=3), st.integers(0, 3)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutated_bytes_never_change_what_is_admitted(edits: list[tuple[int, bytes, int]]) -> None:
    data = bytearray(signed())
    for pos, insert, delete in edits:
        data[pos : pos + delete] = insert
    got = _admit_or_rejected(bytes(data), _stored_up_to(40))
    assert got is None or got == announce.decode(signed(), TRUSTED)


@given(
    start=st.datetimes(timezones=st.just(UTC)),
    now=st.datetimes(timezones=st.just(UTC)),
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    top=st.none() | st.integers(min_value=0, max_value=2**53 - 1),
)
def test_fuzz_time_and_seq_checks(start: datetime, now: datetime, seq: int, top: int | None) -> None:
    text = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    start = announce.parse_start(text)
    store = Store() if top is None else _stored_up_to(top)
    got = _admit_or_rejected(signed(seq=seq, start=text), store, now)
    in_time = -40 * 86_400 <= (start - now).total_seconds() <= 300
    in_window = top is None or (seq != top and top - 50_000 <= seq <= top + 100_000)
    assert (got is not None) == (in_time and in_window)
