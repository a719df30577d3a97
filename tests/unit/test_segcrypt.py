from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from node import segcrypt
from node.keys import KeyFileError, create_master_key, load_master_key
from node.segcrypt import SegmentCryptoError

KEY = bytes(range(16))
IV = bytes(range(16, 32))
MASTER = bytes(range(32))
IDENTITY = segcrypt.key_identity("factory1", "cam1", "k" + "A" * 22)


@pytest.mark.parametrize(
    ("plain", "size"),
    [
        pytest.param(b"", 16, id="empty-is-one-padding-block"),
        pytest.param(b"x" * 15, 16, id="one-short"),
        pytest.param(b"x" * 16, 32, id="whole-block-gets-a-padding-block"),
        pytest.param(b"\x47" * 188 * 10, 1888, id="ts-packets"),
    ],
)
def test_encrypted_size_is_pkcs7(plain: bytes, size: int) -> None:
    assert len(segcrypt.encrypt(plain, KEY, IV)) == size == segcrypt.encrypted_size(len(plain))


def test_matches_plain_aes_cbc_as_hls_players_decrypt() -> None:
    plain = b"\x47" + b"\x00" * 187
    cipher = segcrypt.encrypt(plain, KEY, IV)
    raw = Cipher(algorithms.AES(KEY), modes.CBC(IV)).decryptor()
    padded = raw.update(cipher) + raw.finalize()
    assert padded == plain + bytes([4]) * 4  # 188 = 11 blocks + 12: padded with four 0x04


def test_deterministic_for_the_same_key_and_iv() -> None:
    plain = b"segment" * 100
    assert segcrypt.encrypt(plain, KEY, IV) == segcrypt.encrypt(plain, KEY, IV)
    assert segcrypt.encrypt(plain, KEY, IV) != segcrypt.encrypt(plain, KEY, bytes(16))


@given(st.binary(max_size=4096), st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_round_trip(plain: bytes, key: bytes, iv: bytes) -> None:
    assert segcrypt.decrypt(segcrypt.encrypt(plain, key, iv), key, iv) == plain


@pytest.mark.parametrize(
    "cipher",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x" * 17, id="not-whole-blocks"),
        pytest.param(segcrypt.encrypt(b"x" * 40, KEY, IV)[:-1] + b"\x00", id="last-byte-altered"),
    ],
)
def test_bad_ciphertext_fails_cleanly(cipher: bytes) -> None:
    with pytest.raises(SegmentCryptoError):
        segcrypt.decrypt(cipher, KEY, IV)


def test_wrong_key_fails_to_unpad() -> None:
    with pytest.raises(SegmentCryptoError, match="padding"):
        segcrypt.decrypt(segcrypt.encrypt(b"x" * 40, KEY, IV), bytes(16), IV)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        pytest.param("key", {"key": b"short"}, id="short-key"),
        pytest.param("iv", {"iv": b"x" * 17}, id="long-iv"),
    ],
)
def test_key_and_iv_sizes_are_checked(name: str, kwargs: dict[str, bytes]) -> None:
    args = {"key": KEY, "iv": IV, **kwargs}
    with pytest.raises(ValueError, match=name):
        segcrypt.encrypt(b"x", args["key"], args["iv"])


@given(st.binary(min_size=16, max_size=16))
def test_wrap_round_trip(content_key: bytes) -> None:
    wrapped = segcrypt.wrap(content_key, MASTER, IDENTITY)
    assert segcrypt.WRAPPED.fullmatch(wrapped)
    assert content_key.hex() not in wrapped
    assert segcrypt.unwrap(wrapped, MASTER, IDENTITY) == content_key


def test_wrapping_is_randomised() -> None:
    assert segcrypt.wrap(KEY, MASTER, IDENTITY) != segcrypt.wrap(KEY, MASTER, IDENTITY)


@pytest.mark.parametrize(
    ("master", "identity"),
    [
        pytest.param(bytes(32), IDENTITY, id="other-master-key"),
        pytest.param(MASTER, segcrypt.key_identity("factory2", "cam1", "k" + "A" * 22), id="other-camera"),
        pytest.param(MASTER, segcrypt.key_identity("factory1", "cam1", "k" + "B" * 22), id="other-key-id"),
    ],
)
def test_unwrap_refuses_another_master_key_or_identity(master: bytes, identity: str) -> None:
    wrapped = segcrypt.wrap(KEY, MASTER, IDENTITY)
    with pytest.raises(SegmentCryptoError):
        segcrypt.unwrap(wrapped, master, identity)


@pytest.mark.parametrize(
    "wrapped",
    [
        pytest.param("", id="empty"),
        pytest.param("v2." + "A" * 59, id="unknown-version"),
        pytest.param("v1." + "A" * 59, id="garbage"),
    ],
)
def test_unwrap_refuses_what_is_not_a_wrapped_key(wrapped: str) -> None:
    with pytest.raises(SegmentCryptoError):
        segcrypt.unwrap(wrapped, MASTER, IDENTITY)


def test_unwrap_refuses_a_flipped_bit() -> None:
    wrapped = segcrypt.wrap(KEY, MASTER, IDENTITY)
    flipped = wrapped[:-2] + ("A" if wrapped[-2] != "A" else "B") + wrapped[-1]
    with pytest.raises(SegmentCryptoError):
        segcrypt.unwrap(flipped, MASTER, IDENTITY)


def test_key_ids() -> None:
    ids = {segcrypt.new_key_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(segcrypt.KEY_ID.fullmatch(i) for i in ids)
    with pytest.raises(ValueError, match="key id"):
        segcrypt.key_identity("factory1", "cam1", "../etc")


def test_master_key_file_created_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    assert create_master_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    key = load_master_key(path)
    assert len(key) == 32
    assert not create_master_key(path), "an existing master key is never replaced"
    assert load_master_key(path) == key


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        pytest.param(None, 0o600, "does not exist", id="missing"),
        pytest.param("ab" * 32, 0o640, "chmod 600", id="group-readable"),
        pytest.param("ab" * 32, 0o604, "chmod 600", id="world-readable"),
        pytest.param("ab" * 16, 0o600, "64 hex", id="short"),
        pytest.param("zz" * 32, 0o600, "64 hex", id="not-hex"),
    ],
)
def test_master_key_file_refused(tmp_path: Path, content: str | None, mode: int, message: str) -> None:
    path = tmp_path / "master.key"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    with pytest.raises(KeyFileError, match=message) as caught:
        load_master_key(path)
    assert "ab" * 32 not in str(caught.value), "the key never appears in an error"
