"""Key files: the producer's Ed25519 signing key and the segment-key master key; owner-only."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from node import segcrypt
from node.files import create_private


class KeyFileError(RuntimeError):
    """The key file exists but cannot be used; the message says why."""


def load_or_create(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """Return the key at ``path``, creating it first if there is none; the flag says it was created.

    Creation uses O_EXCL, so two processes starting together cannot each write
    a different key; the loser reads the winner's.
    """
    try:
        return _load(path), False
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    if not create_private(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())):
        return _load(path), False
    return key, True


def _load(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path} is readable by others; run: chmod 600 {path}")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def read_secret_text(path: Path, what: str) -> str:
    """The text of an owner-only secret file; KeyFileError (never quoting the content) otherwise."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        # The type only: a decoding error quotes the offending byte of the secret.
        raise KeyFileError(f"cannot read {what} file {path}: {type(exc).__name__}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others; run: chmod 600 {path}")
    return text


def load_master_key(path: Path) -> bytes:
    """The segment-key master key (32 bytes, hex in an owner-only file); never logged.

    KeyFileError when the file is missing, readable by group or others, or not a key:
    a camera that should encrypt must not fall back to plaintext.
    """
    text = read_secret_text(path, "master key")
    try:
        return segcrypt.parse_master_key(text)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def create_master_key(path: Path) -> bool:
    """Create a master key file (0600) unless one exists; True when this call created it."""
    return create_private(path, segcrypt.format_master_key(segcrypt.new_master_key()).encode("ascii"))
