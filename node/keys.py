"""The producer's Ed25519 signing key: created once, owner-only, never overwritten."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

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
