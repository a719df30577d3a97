"""Segment encryption (HLS AES-128) and envelope encryption of its keys. Pure: no I/O.

A segment is encrypted whole with AES-128-CBC and PKCS7 padding, which is what
``#EXT-X-KEY:METHOD=AES-128`` means to every HLS player (RFC 8216 5.2). A camera
uses one content key (16 random bytes) and one IV for a run of segments; the
run ends every N segments and with every recording session. The same key, IV
and plaintext always give the same ciphertext, so a retried ``ipfs add`` gives
the same CID.

Content keys never leave a process unwrapped except to a logged-in viewer:
the catalog keeps them wrapped by a 32-byte master key with AES-256-GCM, the
key's identity ``factory/device/key_id`` bound as associated data, so a
wrapped key copied to another camera or key id does not unwrap. Wrapped form:
``v1.`` + base64url(12-byte nonce || ciphertext || 16-byte tag).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 16
IV_BYTES = 16
MASTER_KEY_BYTES = 32
NONCE_BYTES = 12
BLOCK_BYTES = 16
# "k" and 128 random bits in unpadded base64url: safe in a URL path, a file name and a catalog _id.
KEY_ID = re.compile(r"k[A-Za-z0-9_-]{22}")
IV_HEX = re.compile(r"[0-9a-f]{32}")
WRAPPED = re.compile(r"v1\.[A-Za-z0-9_-]{59}")  # 44 bytes: nonce, sealed key, tag
_WRAP_PREFIX = "v1."


class SegmentCryptoError(ValueError):
    """Bytes that do not decrypt or unwrap: a wrong key, another identity, or tampering."""


def new_key_id() -> str:
    return "k" + _b64url(secrets.token_bytes(16))


def new_content_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_iv() -> bytes:
    return secrets.token_bytes(IV_BYTES)


def new_master_key() -> bytes:
    return secrets.token_bytes(MASTER_KEY_BYTES)


def key_identity(factory: str, device: str, key_id: str) -> str:
    """What a wrapped key is bound to; also the catalog ``keys`` document's ``_id``."""
    if not KEY_ID.fullmatch(key_id):
        raise ValueError(f"{key_id!r} is not a key id")
    return f"{factory}/{device}/{key_id}"


def encrypted_size(plain_size: int) -> int:
    """PKCS7 always pads, by a whole block when the size is already a multiple of 16."""
    return (plain_size // BLOCK_BYTES + 1) * BLOCK_BYTES


def _check(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def encrypt(plaintext: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC with PKCS7 padding of a whole segment."""
    _check("key", key, KEY_BYTES)
    _check("iv", iv, IV_BYTES)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def decrypt(ciphertext: bytes, key: bytes, iv: bytes) -> bytes:
    """The inverse of :func:`encrypt`; SegmentCryptoError when the padding is not valid."""
    _check("key", key, KEY_BYTES)
    _check("iv", iv, IV_BYTES)
    if not ciphertext or len(ciphertext) % BLOCK_BYTES:
        raise SegmentCryptoError(f"ciphertext of {len(ciphertext)} bytes is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise SegmentCryptoError("bad padding: wrong key or IV, or altered ciphertext") from None


def wrap(content_key: bytes, master_key: bytes, identity: str) -> str:
    """The content key sealed with the master key, bound to ``identity`` (see :func:`key_identity`)."""
    _check("content key", content_key, KEY_BYTES)
    _check("master key", master_key, MASTER_KEY_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(master_key).encrypt(nonce, content_key, identity.encode("utf-8"))
    return _WRAP_PREFIX + _b64url(nonce + sealed)


def unwrap(wrapped: str, master_key: bytes, identity: str) -> bytes:
    """The content key; SegmentCryptoError for another master key, another identity or altered bytes."""
    _check("master key", master_key, MASTER_KEY_BYTES)
    if not WRAPPED.fullmatch(wrapped):
        raise SegmentCryptoError("not a wrapped key (v1.<base64url>)")
    try:
        raw = base64.urlsafe_b64decode(wrapped[len(_WRAP_PREFIX) :] + "=" * (-len(wrapped) % 4))
    except (binascii.Error, ValueError):
        raise SegmentCryptoError("not a wrapped key (v1.<base64url>)") from None
    nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    try:
        key = AESGCM(master_key).decrypt(nonce, sealed, identity.encode("utf-8"))
    except InvalidTag:
        raise SegmentCryptoError(f"wrapped key does not open for {identity} with this master key") from None
    if len(key) != KEY_BYTES:
        raise SegmentCryptoError("wrapped key is not a 16-byte content key")
    return key


def parse_master_key(text: str) -> bytes:
    """A master key file's content: 64 hex characters (whitespace around them ignored)."""
    stripped = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", stripped):
        raise ValueError("a master key file holds 64 hex characters (32 bytes)")
    return bytes.fromhex(stripped)


def format_master_key(master_key: bytes) -> str:
    _check("master key", master_key, MASTER_KEY_BYTES)
    return master_key.hex() + "\n"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
