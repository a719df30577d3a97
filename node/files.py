"""Writing files safely: atomic replacement, owner-only files, create-once secrets.

Every role keeps small files a crash must not tear (state, indexes, playlists,
configs holding secrets); they all go through :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, *, private: bool = False, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never a torn one.

    The temporary file sits beside ``path`` as ``.<name>.<random>.tmp`` (stale ones
    are recognisable by that shape). ``private`` makes it 0600 from its first byte
    (and never follows a planted symlink); otherwise the umask decides, as for any
    new file. ``durable`` syncs the data and the directory before returning.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def create_private(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600, synced) with ``data`` unless it exists; True when this call created it.

    O_EXCL: two processes starting together cannot each write a different secret;
    the loser returns False and reads the winner's file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def hash_file(path: Path) -> tuple[int, str]:
    """The size and sha256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
