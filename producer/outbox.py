"""The producer's durable outbox: every segment is journaled before any network step.

A segment moves through the steps ``add -> pin -> link -> catalog -> announce``;
each step is idempotent and its completion is committed before the next one
starts, so a crash repeats at most the step that was in flight. Sequence
numbers are allocated per camera inside the journaling transaction, so they
only increase and survive restarts. Work is handed out per camera in seq
order: a segment whose step keeps failing holds back the later ones of its
camera (order kept), never those of other cameras.

An encrypting camera's segment is given its content key in the same
journaling transaction (:class:`KeyPolicy`): the camera's current key while
it is of the same session and fewer than ``rotation`` segments old, else a new
one, stored wrapped (never in the clear) in the ``keys`` table. The ``add``
step then encrypts with that key and IV, which is deterministic, so a
repeated ``add`` gives the same ciphertext and CID; it records the
ciphertext's size and sha256 with the CID.

Each recording session (one ffmpeg run) gets one clock shift, fixed with its
first journaled segment and applied to all of them: see
:func:`session_shift_ms`.

SQLite in WAL mode with ``synchronous=FULL``: a journaled segment survives a
power cut. The calls are short and synchronous; async callers run them in a
worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from node.announce import format_start, parse_start

T = TypeVar("T")

STEPS = ("add", "pin", "link", "catalog", "announce")
# A segment's state names the last step it completed, or "journaled" before the first.
JOURNALED = "journaled"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cameras (
    camera TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    session TEXT NOT NULL,
    filename TEXT NOT NULL,
    path TEXT NOT NULL,
    start TEXT NOT NULL,
    duration REAL NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    cid TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    done_at REAL,
    file_deleted INTEGER NOT NULL DEFAULT 0,
    key_id TEXT,
    cipher_size INTEGER,
    cipher_sha256 TEXT,
    UNIQUE (camera, seq),
    UNIQUE (camera, session, filename)
);
CREATE INDEX IF NOT EXISTS segments_pending ON segments (camera, state, seq);
CREATE TABLE IF NOT EXISTS keys (
    camera TEXT NOT NULL,
    key_id TEXT NOT NULL,
    session TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    wrapped TEXT NOT NULL,
    iv TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (camera, key_id)
);
CREATE INDEX IF NOT EXISTS keys_by_seq ON keys (camera, first_seq);
CREATE TABLE IF NOT EXISTS clocks (
    camera TEXT NOT NULL,
    session TEXT NOT NULL,
    shift_ms INTEGER NOT NULL,
    PRIMARY KEY (camera, session)
);
CREATE TABLE IF NOT EXISTS sessions (
    camera TEXT NOT NULL,
    session TEXT NOT NULL,
    media TEXT NOT NULL,
    PRIMARY KEY (camera, session)
);
"""
# Columns added after the first release: an outbox made before gets them at open.
_ADDED_COLUMNS = {"key_id": "TEXT", "cipher_size": "INTEGER", "cipher_sha256": "TEXT"}


def next_step(state: str) -> str | None:
    """The step to run for a segment in ``state``; None once announced."""
    if state == JOURNALED:
        return STEPS[0]
    index = STEPS.index(state)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


def backoff(attempts: int, *, base: float = 0.25, cap: float = 5.0) -> float:
    """Seconds to wait after the ``attempts``-th consecutive failure."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class NewSegment:
    camera: str
    session: str
    filename: str
    path: str
    start: str
    duration: float
    size: int
    sha256: str


@dataclass(frozen=True)
class NewKey:
    """A content key made for a camera: its id, the key wrapped by the master key, the IV (hex)."""

    key_id: str
    wrapped: str
    iv: str


@dataclass(frozen=True)
class KeyPolicy:
    """How an encrypting camera's segments get keys: ``new`` makes one, used for ``rotation`` segments."""

    rotation: int
    new: Callable[[], NewKey]


@dataclass(frozen=True)
class SegmentKey(NewKey):
    camera: str
    session: str
    first_seq: int
    created_at: float


@dataclass(frozen=True)
class Entry(NewSegment):
    """A journaled segment and where it stands in the pipeline."""

    id: int
    seq: int
    state: str
    cid: str | None
    attempts: int
    last_error: str
    not_before: float
    created_at: float
    key_id: str | None = None  # set when the segment is encrypted
    cipher_size: int | None = None  # of the ciphertext, known once added
    cipher_sha256: str | None = None

    @property
    def step(self) -> str | None:
        return next_step(self.state)

    @property
    def published_size(self) -> int:
        """The size of what was added to IPFS: the ciphertext's for an encrypted segment."""
        if self.key_id is None:
            return self.size
        if self.cipher_size is None:
            raise ValueError(f"entry {self.id} is encrypted but not added yet")
        return self.cipher_size

    @property
    def published_sha256(self) -> str:
        if self.key_id is None:
            return self.sha256
        if self.cipher_sha256 is None:
            raise ValueError(f"entry {self.id} is encrypted but not added yet")
        return self.cipher_sha256


class Outbox:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {str(r["name"]) for r in self._db.execute("PRAGMA table_info(segments)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE segments ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def journal(self, segment: NewSegment, keys: KeyPolicy | None = None, *, lead: float = 0.0) -> Entry:
        """Record a completed segment and give it the camera's next seq; idempotent per file.

        With ``keys`` the segment also gets its content key (see the module docstring).
        The start is moved by its session's clock shift (:func:`session_shift_ms`),
        fixed when the session's first segment is journaled, from ``lead`` (how far
        ffmpeg's clock was measured to run ahead) and the camera's previous segment.
        """
        with self._tx() as db:
            existing = db.execute(
                "SELECT * FROM segments WHERE camera=? AND session=? AND filename=?",
                (segment.camera, segment.session, segment.filename),
            ).fetchone()
            if existing is not None:
                return _entry(existing)
            start = _shifted(segment.start, self._session_shift(db, segment, lead))
            row = db.execute("SELECT next_seq FROM cameras WHERE camera=?", (segment.camera,)).fetchone()
            seq = int(row["next_seq"]) if row else 0
            db.execute(
                "INSERT INTO cameras (camera, next_seq) VALUES (?, ?) "
                "ON CONFLICT(camera) DO UPDATE SET next_seq=excluded.next_seq",
                (segment.camera, seq + 1),
            )
            key_id = None if keys is None else self._key_for(db, segment, seq, keys)
            cursor = db.execute(
                "INSERT INTO segments (camera, seq, session, filename, path, start, duration, size, sha256,"
                " state, created_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    segment.camera,
                    seq,
                    segment.session,
                    segment.filename,
                    segment.path,
                    start,
                    segment.duration,
                    segment.size,
                    segment.sha256,
                    JOURNALED,
                    self._clock(),
                    key_id,
                ),
            )
            assert cursor.lastrowid is not None
            return _read(db, cursor.lastrowid)

    def _session_shift(self, db: sqlite3.Connection, segment: NewSegment, lead: float) -> int:
        """The session's clock shift in ms: stored with its first segment, the same for all of them."""
        row = db.execute(
            "SELECT shift_ms FROM clocks WHERE camera=? AND session=?", (segment.camera, segment.session)
        ).fetchone()
        if row is not None:
            return int(row["shift_ms"])
        last = db.execute(
            "SELECT session, start, duration FROM segments WHERE camera=? ORDER BY seq DESC LIMIT 1",
            (segment.camera,),
        ).fetchone()
        if last is not None and last["session"] == segment.session:
            shift = 0  # a session journaled before clock shifts were kept
        else:
            previous = None
            if last is not None:
                previous = (_ms(str(last["start"])), round(float(last["duration"]) * 1000))
            shift = session_shift_ms(_ms(segment.start), round(lead * 1000), previous)
        db.execute(
            "INSERT INTO clocks (camera, session, shift_ms) VALUES (?, ?, ?)",
            (segment.camera, segment.session, shift),
        )
        return shift

    def _key_for(self, db: sqlite3.Connection, segment: NewSegment, seq: int, keys: KeyPolicy) -> str:
        """The camera's current key if it is of this session and young enough, else a new one."""
        row = db.execute(
            "SELECT key_id, session, first_seq FROM keys WHERE camera=? ORDER BY first_seq DESC LIMIT 1",
            (segment.camera,),
        ).fetchone()
        if row is not None and row["session"] == segment.session and seq - row["first_seq"] < keys.rotation:
            return str(row["key_id"])
        made = keys.new()
        db.execute(
            "INSERT INTO keys (camera, key_id, session, first_seq, wrapped, iv, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (segment.camera, made.key_id, segment.session, seq, made.wrapped, made.iv, self._clock()),
        )
        return made.key_id

    def key(self, camera: str, key_id: str) -> SegmentKey:
        """A content key (wrapped) a segment of ``camera`` was given; KeyError when unknown."""
        row = self._db.execute("SELECT * FROM keys WHERE camera=? AND key_id=?", (camera, key_id)).fetchone()
        if row is None:
            raise KeyError(f"no key {key_id} for {camera}")
        return SegmentKey(
            key_id=str(row["key_id"]),
            wrapped=str(row["wrapped"]),
            iv=str(row["iv"]),
            camera=str(row["camera"]),
            session=str(row["session"]),
            first_seq=int(row["first_seq"]),
            created_at=float(row["created_at"]),
        )

    def known(self, camera: str, session: str, filename: str) -> bool:
        """Whether this file of this session is already journaled."""
        row = self._db.execute(
            "SELECT 1 FROM segments WHERE camera=? AND session=? AND filename=?", (camera, session, filename)
        ).fetchone()
        return row is not None

    def set_session_media(self, camera: str, session: str, media: str) -> None:
        """Remember a session's stream description (JSON from ffprobe); the first one stays."""
        self._db.execute(
            "INSERT OR IGNORE INTO sessions (camera, session, media) VALUES (?, ?, ?)",
            (camera, session, media),
        )

    def session_media(self, camera: str, session: str) -> str | None:
        row = self._db.execute(
            "SELECT media FROM sessions WHERE camera=? AND session=?", (camera, session)
        ).fetchone()
        return str(row["media"]) if row else None

    def head(self, camera: str) -> Entry | None:
        """The camera's oldest unfinished segment: the only one it may work on now."""
        row = self._db.execute(
            "SELECT * FROM segments WHERE camera=? AND state != ? ORDER BY seq LIMIT 1", (camera, STEPS[-1])
        ).fetchone()
        return _entry(row) if row else None

    def complete(
        self, entry_id: int, step: str, *, cid: str | None = None, cipher: tuple[int, str] | None = None
    ) -> Entry:
        """Commit that ``step`` succeeded; refuses to skip or repeat a step.

        ``cipher`` is the (size, sha256) of an encrypted segment's ciphertext, given with its CID.
        """
        with self._tx() as db:
            current = _read(db, entry_id)
            if current.step != step:
                raise ValueError(
                    f"entry {entry_id} is at {current.state!r}; next step is {current.step!r}, not {step!r}"
                )
            done_at = self._clock() if step == STEPS[-1] else None
            size, digest = cipher if cipher is not None else (None, None)
            db.execute(
                "UPDATE segments SET state=?, cid=COALESCE(?, cid), attempts=0, last_error='', not_before=0,"
                " done_at=COALESCE(?, done_at), cipher_size=COALESCE(?, cipher_size),"
                " cipher_sha256=COALESCE(?, cipher_sha256) WHERE id=?",
                (step, cid, done_at, size, digest, entry_id),
            )
            return _read(db, entry_id)

    def fail(self, entry_id: int, error: str) -> Entry:
        """Record a failed attempt; the entry is retried after an exponential backoff."""
        with self._tx() as db:
            attempts = _read(db, entry_id).attempts + 1
            db.execute(
                "UPDATE segments SET attempts=?, last_error=?, not_before=? WHERE id=?",
                (attempts, error[:500], self._clock() + backoff(attempts), entry_id),
            )
            return _read(db, entry_id)

    def depth(self, camera: str | None = None) -> tuple[int, float | None]:
        """(unfinished segments, age in seconds of the oldest), overall or for one camera."""
        query = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM segments WHERE state != ?"
        args: tuple[object, ...] = (STEPS[-1],)
        if camera is not None:
            query += " AND camera=?"
            args += (camera,)
        row = self._db.execute(query, args).fetchone()
        oldest = row["oldest"]
        return int(row["n"]), (self._clock() - float(oldest)) if oldest is not None else None

    def deletable(self, older_than: float) -> list[Entry]:
        """Announced segments whose local file may go: done before ``older_than`` (epoch seconds)."""
        rows = self._db.execute(
            "SELECT * FROM segments WHERE state=? AND file_deleted=0 AND done_at < ? ORDER BY id",
            (STEPS[-1], older_than),
        ).fetchall()
        return [_entry(r) for r in rows]

    def mark_deleted(self, entry_id: int) -> None:
        self._db.execute("UPDATE segments SET file_deleted=1 WHERE id=?", (entry_id,))

    def entries(self, camera: str) -> list[Entry]:
        rows = self._db.execute("SELECT * FROM segments WHERE camera=? ORDER BY seq", (camera,)).fetchall()
        return [_entry(r) for r in rows]

    def cameras(self) -> list[str]:
        return [str(r["camera"]) for r in self._db.execute("SELECT camera FROM cameras ORDER BY camera")]


@dataclass(frozen=True)
class Journaled:
    """One journaled segment as :func:`read_journal` gives it."""

    camera: str
    session: str
    filename: str  # ffmpeg's file name in the session directory
    seq: int
    sha256: str  # of the file ffmpeg wrote
    published_sha256: str | None  # of what went to IPFS; None while an encrypted one waits for add


def read_only(path: Path) -> sqlite3.Connection:
    """The outbox at ``path`` opened read-only, for audits and benchmarks beside a running producer
    (in WAL mode a reader does not block the writer); close it when done."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)


def read_journal(path: Path) -> list[Journaled]:
    """Every segment journaled in the outbox at ``path``: how audits and benchmarks tie ffmpeg's
    files to sequence numbers."""
    with closing(read_only(path)) as db:
        rows = db.execute(
            "SELECT camera, session, filename, seq, sha256, key_id, cipher_sha256 FROM segments"
        ).fetchall()
    return [
        Journaled(str(c), str(s), str(f), int(q), str(sha), str(sha) if key is None else csha)
        for c, s, f, q, sha, key, csha in rows
    ]


def session_shift_ms(start_ms: int, lead_ms: int, previous: tuple[int, int] | None) -> int:
    """How far (ms) to move every segment of a new recording session, given its first segment.

    Back by ``lead_ms``, how far ffmpeg's PROGRAM-DATE-TIME was measured to run
    ahead of the footage; then forward as far as needed for the session to
    start after the camera's ``previous`` segment (start, duration in ms)
    ends, and strictly after it starts. Each ffmpeg run has its own lead, so
    without this two runs back to back (a producer restart that stops the old
    ffmpeg and starts a new one) could overlap or even reverse in time.
    """
    shift = -max(0, lead_ms)
    if previous is not None:
        previous_start, previous_duration = previous
        earliest = max(previous_start + previous_duration, previous_start + 1)
        shift = max(shift, earliest - start_ms)
    return shift


def _ms(start: str) -> int:
    return round(parse_start(start).timestamp() * 1000)


def _shifted(start: str, shift_ms: int) -> str:
    if shift_ms == 0:
        return start
    return format_start(parse_start(start) + timedelta(milliseconds=shift_ms))


def _read(db: sqlite3.Connection, entry_id: int) -> Entry:
    row = db.execute("SELECT * FROM segments WHERE id=?", (entry_id,)).fetchone()
    if row is None:
        raise KeyError(f"no outbox entry {entry_id}")
    return _entry(row)


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        id=int(row["id"]),
        camera=str(row["camera"]),
        seq=int(row["seq"]),
        session=str(row["session"]),
        filename=str(row["filename"]),
        path=str(row["path"]),
        start=str(row["start"]),
        duration=float(row["duration"]),
        size=int(row["size"]),
        sha256=str(row["sha256"]),
        state=str(row["state"]),
        cid=row["cid"],
        attempts=int(row["attempts"]),
        last_error=str(row["last_error"]),
        not_before=float(row["not_before"]),
        created_at=float(row["created_at"]),
        key_id=row["key_id"],
        cipher_size=row["cipher_size"],
        cipher_sha256=row["cipher_sha256"],
    )


class AsyncOutbox:
    """The outbox for asyncio code: every call runs on one dedicated thread, in order.

    SQLite commits with fsync, so calls must not run on the event loop; one
    thread also serialises access to the single connection.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self.call(self.sync.close)
        self._thread.shutdown(wait=True)
