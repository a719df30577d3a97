"""The gateway's users: who may log in and which cameras each one may watch.

The database is one JSON file, owner-only (0600), replaced atomically on every
change, so a reader sees the old file or the new one and never a torn write::

    {
      "version": 1,
      "users": {
        "alice": {"role": "client", "factories": ["factory1"], "cameras": ["factory2/cam2"],
                  "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$..."},
        "root": {"role": "admin", "factories": [], "cameras": [], "password_hash": "$argon2id$..."}
      }
    }

A :class:`UserStore` re-reads the file when its identity (inode, size, mtime,
ctime, mode) changes, so ``camswarm users add`` takes effect in a running
gateway without a restart; a lookup costs one ``stat``. A missing file is an
empty database (nobody can log in). Writers serialise on an advisory lock on
``FILE.lock`` so two concurrent ``camswarm users`` commands cannot lose each
other's change.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from node.config import NAME
from node.files import write_atomic

log = logging.getLogger(__name__)

USERNAME = r"[a-z0-9][a-z0-9_.-]{0,31}"
CAMERA = rf"(?:{NAME})/(?:{NAME})"
ROLES = ("admin", "client")
MIN_PASSWORD = 8
# Bounds the work an unauthenticated request can ask of the hasher.
MAX_PASSWORD = 1024
FORMAT_VERSION = 1

Role = Literal["admin", "client"]

_ENTRY_KEYS = ("cameras", "factories", "password_hash", "role")


class UserError(ValueError):
    """Bad input or an unusable users file; the message says what and never holds a hash."""


def default_hasher() -> argon2.PasswordHasher:
    """The argon2id parameters of new password hashes.

    OWASP's minimum for argon2id: 19 MiB of memory, 2 passes, 1 lane. On a
    2-core gateway one verification takes a few tens of milliseconds on one
    core and 19 MiB, so a burst of logins cannot starve video serving or the
    memory of the box. Stored hashes carry their own parameters; a login with a
    hash made under other parameters is rehashed with these.
    """
    return argon2.PasswordHasher(
        time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=argon2.Type.ID
    )


def check_username(username: str) -> None:
    if not isinstance(username, str) or not re.fullmatch(USERNAME, username):
        raise UserError(
            f"username {username!r} is not valid: use 1 to 32 characters from a-z 0-9 _ . -,"
            " starting with a letter or a digit"
        )


def check_password(password: str) -> None:
    if not isinstance(password, str):
        raise UserError("password must be a string")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password is too short: at least {MIN_PASSWORD} characters, got {len(password)}")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password is too long: at most {MAX_PASSWORD} characters, got {len(password)}")


def _role(value: str) -> Role:
    if value == "admin":
        return "admin"
    if value == "client":
        return "client"
    raise UserError(f"role must be admin or client, got {value!r}")


def check_scope(role: str, factories: Iterable[str], cameras: Iterable[str]) -> None:
    """What a user of ``role`` may see: admins everything, clients at least one factory or camera."""
    factories, cameras = tuple(factories), tuple(cameras)
    for kind, values, pattern, shape in (
        ("factory", factories, NAME, "a factory name"),
        ("camera", cameras, CAMERA, "factory/device"),
    ):
        seen: set[str] = set()
        for value in values:
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                raise UserError(f"{kind} {value!r} is not {shape} (each name matching {NAME})")
            if value in seen:
                raise UserError(f"{kind} {value!r} is listed twice")
            seen.add(value)
    if _role(role) == "admin":
        if factories or cameras:
            raise UserError("an admin sees every camera; factories and cameras are for clients only")
    elif not factories and not cameras:
        raise UserError("a client needs at least one factory or camera to see")


def check_user(username: str, role: str, factories: Iterable[str] = (), cameras: Iterable[str] = ()) -> None:
    """Everything about a new user but the password, so a CLI can refuse before prompting."""
    check_username(username)
    check_scope(role, factories, cameras)


def _check_hash(password_hash: str) -> None:
    try:
        if not isinstance(password_hash, str):
            raise InvalidHashError
        argon2.extract_parameters(password_hash)
    except InvalidHashError:
        raise UserError("password_hash is not an argon2 hash") from None


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    factories: tuple[str, ...] = ()  # a client sees every camera of these factories
    cameras: tuple[str, ...] = ()  # and these "factory/device" cameras
    password_hash: str = field(repr=False, kw_only=True)  # never logged

    def __post_init__(self) -> None:
        check_user(self.username, self.role, self.factories, self.cameras)
        _check_hash(self.password_hash)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, factory: str, device: str) -> bool:
        if self.role == "admin":
            return True
        return factory in self.factories or f"{factory}/{device}" in self.cameras


# The file's identity; a change means another process replaced or edited it.
_Signature = tuple[int, int, int, int, int, int] | None


@dataclass(frozen=True)
class _Snapshot:
    signature: _Signature
    users: Mapping[str, User]


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def _expect(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise UserError(f"{where}: {message}")


def _no_duplicates(pairs: builtins.list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # A hand edit naming a user twice must not silently keep only the last entry.
            raise UserError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _parse(path: Path, raw: bytes) -> dict[str, User]:
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise UserError(f"users file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"users file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UserError as exc:
        raise UserError(f"users file {path}: {exc}") from None
    where = f"users file {path}"
    _expect(isinstance(data, dict), where, "must be a JSON object with version and users")
    unknown = sorted(set(data) - {"version", "users"})
    _expect(not unknown, where, f"unknown keys {', '.join(map(repr, unknown))} (known: users, version)")
    _expect(data.get("version") == FORMAT_VERSION, where, f"version must be {FORMAT_VERSION}")
    entries = data.get("users")
    _expect(isinstance(entries, dict), where, "users must be a JSON object")
    users: dict[str, User] = {}
    for name, entry in entries.items():
        at = f"{where}: users[{name!r}]"
        _expect(isinstance(entry, dict), at, "must be a JSON object")
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        _expect(
            not unknown, at, f"unknown keys {', '.join(map(repr, unknown))} (known: {', '.join(_ENTRY_KEYS)})"
        )
        for key in ("factories", "cameras"):
            value = entry.get(key, [])
            _expect(isinstance(value, list), at, f"{key} must be an array")
        _expect("password_hash" in entry and "role" in entry, at, "role and password_hash are required")
        _expect(isinstance(entry["role"], str), at, "role must be a string")
        try:
            users[name] = User(
                username=name,
                role=_role(entry["role"]),
                factories=tuple(entry.get("factories", [])),
                cameras=tuple(entry.get("cameras", [])),
                password_hash=entry["password_hash"],
            )
        except UserError as exc:
            raise UserError(f"{at}: {exc}") from None
    return users


def _dump(users: Mapping[str, User]) -> str:
    entries: dict[str, Any] = {
        u.username: {
            "role": u.role,
            "factories": list(u.factories),
            "cameras": list(u.cameras),
            "password_hash": u.password_hash,
        }
        for u in users.values()
    }
    return json.dumps({"version": FORMAT_VERSION, "users": entries}, indent=2, sort_keys=True) + "\n"


class UserStore:
    """The users file at ``path``; lookups re-read it when another process has changed it."""

    def __init__(self, path: Path | str, hasher: argon2.PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self._hasher = hasher or default_hasher()
        self._snapshot = self._load()
        # Verified when the username is unknown, so a miss costs what a hit costs.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))

    # -- reading ---------------------------------------------------------------------------------

    def _load(self) -> _Snapshot:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return _Snapshot(None, {})
        except OSError as exc:
            raise UserError(f"cannot read users file {self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077:
                raise UserError(
                    f"users file {self.path} is accessible by other users; run: chmod 600 {self.path}"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                raw = handle.read()
        except OSError as exc:
            raise UserError(f"cannot read users file {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        return _Snapshot(_signature(st), _parse(self.path, raw))

    def _current_signature(self) -> _Signature:
        try:
            return _signature(self.path.stat())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserError(f"cannot read users file {self.path}: {exc.strerror}") from None

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since the last read; True when it did.

        A file that became unusable raises :class:`UserError` on every call until
        fixed: serving a stale copy could keep a removed user logged in.
        """
        if self._current_signature() == self._snapshot.signature:
            return False
        self._snapshot = self._load()
        return True

    def get(self, username: str) -> User | None:
        self.reload_if_changed()
        return self._snapshot.users.get(username)

    def list(self) -> builtins.list[User]:
        self.reload_if_changed()
        return sorted(self._snapshot.users.values(), key=lambda u: u.username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right, else None; always one argon2 verification.

        CPU-bound for tens of milliseconds: call it from a worker thread
        (``asyncio.to_thread``) in the gateway.
        """
        user = self.get(username)
        acceptable = isinstance(password, str) and MIN_PASSWORD <= len(password) <= MAX_PASSWORD
        target = user.password_hash if user is not None and acceptable else self._dummy_hash
        try:
            self._hasher.verify(target, password if acceptable else "")
        except (VerificationError, InvalidHashError):
            return None
        if user is None or target is self._dummy_hash:
            return None
        if self._hasher.check_needs_rehash(user.password_hash):
            return self._rehash(user, password)
        return user

    # -- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, User]]:
        """The freshly read users, under the writers' lock; the caller writes before leaving."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UserError(f"cannot lock users file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._snapshot = self._load()
            yield dict(self._snapshot.users)
        finally:
            os.close(fd)  # releases the lock

    def _save(self, users: Mapping[str, User]) -> None:
        try:
            write_atomic(self.path, _dump(users), private=True)
        except OSError as exc:
            raise UserError(f"cannot write users file {self.path}: {exc.strerror}") from None
        self._snapshot = _Snapshot(self._current_signature(), dict(users))

    def _change(self, username: str, update: Callable[[User | None], User | None]) -> None:
        with self._locked() as users:
            result = update(users.get(username))
            if result is None:
                users.pop(username, None)
            else:
                users[username] = result
            self._save(users)

    def add(
        self,
        username: str,
        password: str,
        role: str,
        factories: Iterable[str] = (),
        cameras: Iterable[str] = (),
    ) -> User:
        factories, cameras = tuple(factories), tuple(cameras)
        check_user(username, role, factories, cameras)
        check_password(password)
        user = User(username, _role(role), factories, cameras, password_hash=self._hasher.hash(password))

        def update(existing: User | None) -> User:
            if existing is not None:
                raise UserError(f"user {username!r} already exists in {self.path}")
            return user

        self._change(username, update)
        return user

    def remove(self, username: str) -> None:
        def update(existing: User | None) -> None:
            if existing is None:
                raise UserError(f"no user {username!r} in {self.path}")

        self._change(username, update)

    def set_password(self, username: str, password: str) -> User:
        check_password(password)
        password_hash = self._hasher.hash(password)
        changed: builtins.list[User] = []

        def update(existing: User | None) -> User:
            if existing is None:
                raise UserError(f"no user {username!r} in {self.path}")
            changed.append(replace(existing, password_hash=password_hash))
            return changed[0]

        self._change(username, update)
        return changed[0]

    def _rehash(self, user: User, password: str) -> User:
        """Store the hash under today's parameters; the login succeeds even if that fails."""
        fresh = replace(user, password_hash=self._hasher.hash(password))

        def update(existing: User | None) -> User | None:
            if existing != user:
                raise _Unchanged  # changed or removed since the login read it
            return fresh

        try:
            self._change(user.username, update)
        except _Unchanged:
            return user
        except UserError as exc:
            log.warning("could not store a rehashed password for %s: %s", user.username, exc)
            return user
        return fresh


class _Unchanged(Exception):
    pass
