"""The outbox state machine: any interleaving of failures and crashes ends with
every segment done exactly once, in order."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.outbox import (
    JOURNALED,
    STEPS,
    KeyPolicy,
    NewKey,
    NewSegment,
    Outbox,
    backoff,
    next_step,
    read_journal,
    session_shift_ms,
)


def _segment(camera: str, n: int, session: str = "20261121T000000Z") -> NewSegment:
    return NewSegment(
        camera=camera,
        session=session,
        filename=f"seg-{n:06d}.ts",
        path=f"/s/{camera}/seg-{n:06d}.ts",
        start="2026-11-21T00:00:00.000Z",
        duration=2.0,
        size=1000 + n,
        sha256="00" * 32,
    )


def test_next_step_walks_the_pipeline() -> None:
    assert next_step(JOURNALED) == "add"
    assert [next_step(s) for s in STEPS] == ["pin", "link", "catalog", "announce", None]


def test_backoff_grows_and_caps() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert backoff(50) == 5.0


def test_seq_survives_restart_and_journal_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    box = Outbox(db)
    assert box.journal(_segment("f/a", 0)).seq == 0
    assert box.journal(_segment("f/a", 1)).seq == 1
    assert box.journal(_segment("f/b", 0)).seq == 0
    box.close()
    box = Outbox(db)
    assert box.journal(_segment("f/a", 1)).seq == 1, "the same file journaled twice keeps its seq"
    assert box.journal(_segment("f/a", 0, session="20261121T010000Z")).seq == 2
    assert box.depth()[0] == 4
    box.close()


def test_steps_cannot_be_skipped_or_repeated(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    entry = box.journal(_segment("f/a", 0))
    with pytest.raises(ValueError, match="next step is 'add'"):
        box.complete(entry.id, "pin")
    box.complete(entry.id, "add", cid="bafy")
    with pytest.raises(ValueError, match="next step is 'pin'"):
        box.complete(entry.id, "add")
    failed = box.fail(entry.id, "cluster unreachable")
    assert failed.attempts == 1 and failed.last_error == "cluster unreachable" and failed.cid == "bafy"
    assert box.complete(entry.id, "pin").attempts == 0


def test_deletable_only_after_announce_and_retention(tmp_path: Path) -> None:
    now = [1000.0]
    box = Outbox(tmp_path / "o.sqlite", clock=lambda: now[0])
    entry = box.journal(_segment("f/a", 0))
    for step in STEPS:
        assert box.deletable(older_than=now[0] + 10) == []
        box.complete(entry.id, step, cid="bafy" if step == "add" else None)
    now[0] = 2000.0  # announced at 1000; the cutoff is "now minus local retention"
    assert box.deletable(older_than=900.0) == []
    assert [e.id for e in box.deletable(older_than=1500.0)] == [entry.id]
    box.mark_deleted(entry.id)
    assert box.deletable(older_than=1500.0) == []


ACTIONS = st.sampled_from(["ok", "ok", "fail", "crash_before_effect", "crash_after_effect", "journal"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(st.tuples(st.sampled_from(["f/a", "f/b"]), ACTIONS), max_size=120))
def test_any_failures_and_crashes_end_done_exactly_once_in_order(schedule: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "outbox.sqlite"
        box = Outbox(db)
        written = {"f/a": 0, "f/b": 0}
        effects: dict[str, list[tuple[str, int]]] = {step: [] for step in STEPS}

        def record(camera: str) -> None:
            box.journal(_segment(camera, written[camera]))
            written[camera] += 1

        for camera in written:
            record(camera)

        def attempt(camera: str, action: str) -> None:
            nonlocal box
            if action == "journal":
                record(camera)
                return
            entry = box.head(camera)
            if entry is None or entry.step is None:
                return
            step = entry.step
            if action == "fail":
                box.fail(entry.id, "boom")
                return
            if action == "crash_before_effect":
                box.close()
                box = Outbox(db)
                return
            effects[step].append((camera, entry.seq))  # the network side effect (idempotent upstream)
            if action == "crash_after_effect":
                box.close()
                box = Outbox(db)
                return
            box.complete(entry.id, step, cid=f"cid-{camera}-{entry.seq}" if step == "add" else None)

        for camera, action in schedule:
            attempt(camera, action)
        for _ in range(10 * len(STEPS) * (sum(written.values()) + 1)):  # then everything works
            for camera in written:
                attempt(camera, "ok")

        for camera, count in written.items():
            entries = box.entries(camera)
            assert [e.seq for e in entries] == list(range(count)), "seq contiguous from 0"
            assert all(e.state == STEPS[-1] for e in entries), "every segment done"
            assert all(e.cid == f"cid-{camera}-{e.seq}" for e in entries)
            for step in STEPS:
                seen = [seq for cam, seq in effects[step] if cam == camera]
                first_seen = list(dict.fromkeys(seen))
                assert first_seen == list(range(count)), f"{step} applied to every segment, in seq order"
                # at-least-once delivery: a repeat only ever re-sends the segment just before it
                for previous, current in itertools.pairwise(seen):
                    assert current in (previous, previous + 1)
        assert box.depth()[0] == 0
        box.close()


class _Keys:
    """A KeyPolicy's key maker that counts what it made (no real crypto needed here)."""

    def __init__(self, rotation: int) -> None:
        self.made = 0
        self.policy = KeyPolicy(rotation, self.new)

    def new(self) -> NewKey:
        self.made += 1
        return NewKey(key_id=f"k{self.made:022d}", wrapped=f"v1.wrapped{self.made}", iv=f"{self.made:032x}")


def test_keys_rotate_every_n_segments_and_on_a_new_session(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    keys = _Keys(rotation=3)
    ids = [box.journal(_segment("f/a", n), keys.policy).key_id for n in range(7)]
    assert ids == [f"k{i:022d}" for i in (1, 1, 1, 2, 2, 2, 3)]
    new_session = box.journal(_segment("f/a", 7, session="20261121T010000Z"), keys.policy)
    assert new_session.key_id == f"k{4:022d}", "a new session starts a new key"
    assert box.journal(_segment("f/b", 0), keys.policy).key_id == f"k{5:022d}", "keys are per camera"
    key = box.key("f/a", f"k{2:022d}")
    assert (key.first_seq, key.iv, key.wrapped) == (3, f"{2:032x}", "v1.wrapped2")
    with pytest.raises(KeyError):
        box.key("f/b", f"k{2:022d}")
    assert box.journal(_segment("f/c", 0)).key_id is None, "a camera without a policy stays plaintext"


def test_a_journaled_key_survives_restart_and_rejournaling(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    box = Outbox(db)
    keys = _Keys(rotation=10)
    first = box.journal(_segment("f/a", 0), keys.policy)
    box.close()
    box = Outbox(db)
    assert box.journal(_segment("f/a", 0), keys.policy).key_id == first.key_id
    assert box.journal(_segment("f/a", 1), keys.policy).key_id == first.key_id
    assert keys.made == 1


def test_cipher_size_and_hash_are_published(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    entry = box.journal(_segment("f/a", 0), _Keys(rotation=10).policy)
    with pytest.raises(ValueError, match="not added"):
        _ = entry.published_size
    done = box.complete(entry.id, "add", cid="bafy", cipher=(1008, "cd" * 32))
    assert (done.published_size, done.published_sha256, done.size) == (1008, "cd" * 32, 1000)
    plain = box.journal(_segment("f/b", 0))
    assert (plain.published_size, plain.published_sha256) == (1000, "00" * 32)
    waiting = box.journal(_segment("f/a", 1), _Keys(rotation=10).policy)
    read = {(j.camera, j.filename): j for j in read_journal(tmp_path / "o.sqlite")}  # another connection
    assert (read["f/a", "seg-000000.ts"].seq, read["f/a", "seg-000000.ts"].published_sha256) == (0, "cd" * 32)
    assert read["f/b", "seg-000000.ts"].published_sha256 == "00" * 32
    assert read["f/a", "seg-000001.ts"].published_sha256 is None, "encrypted, not added yet"
    assert read["f/a", "seg-000001.ts"].sha256 == waiting.sha256


def test_an_outbox_from_before_encryption_gets_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE segments (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL,"
        " seq INTEGER NOT NULL, session TEXT NOT NULL, filename TEXT NOT NULL, path TEXT NOT NULL,"
        " start TEXT NOT NULL, duration REAL NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
        " state TEXT NOT NULL, cid TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT NOT NULL DEFAULT '', not_before REAL NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL, done_at REAL, file_deleted INTEGER NOT NULL DEFAULT 0,"
        " UNIQUE (camera, seq), UNIQUE (camera, session, filename));"
        "INSERT INTO segments (camera, seq, session, filename, path, start, duration, size, sha256, state,"
        " created_at) VALUES ('f/a', 0, 's', 'seg-000000.ts', '/p', '2026-11-21T00:00:00.000Z', 2, 5, 'ab',"
        " 'journaled', 0);"
        "CREATE TABLE cameras (camera TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);"
        "INSERT INTO cameras VALUES ('f/a', 1);"
    )
    old.close()
    box = Outbox(db)
    (entry,) = box.entries("f/a")
    assert entry.key_id is None and entry.published_size == 5
    assert box.journal(_segment("f/a", 1), _Keys(rotation=2).policy).key_id is not None


@pytest.mark.parametrize(
    ("start", "lead", "previous", "shift"),
    [
        (10_000, 0, None, 0),  # the camera's first session, no lead measured: ffmpeg's clock
        (10_000, 1_008, None, -1_008),  # back by the measured lead
        (10_000, -50, None, 0),  # a negative lead is no lead
        (10_000, 1_000, (5_000, 2_000), -1_000),  # back by the lead, still after the previous end
        (10_000, 1_000, (7_000, 2_500), -500),  # the lead would overlap the previous segment: stop at its end
        (10_134, 0, (10_000, 134), 0),  # starts right where the previous ends
        (10_131, 0, (10_134, 120), 123),  # the run CI caught: 3 ms before the previous start
        (10_000, 0, (10_000, 0), 1),  # after a zero-length previous segment: still strictly later
    ],
)
def test_session_shift(start: int, lead: int, previous: tuple[int, int] | None, shift: int) -> None:
    assert session_shift_ms(start, lead, previous) == shift


def _at(n: int, session: str, start: str, duration: float = 2.0) -> NewSegment:
    return dataclasses.replace(_segment("f/a", n, session), start=start, duration=duration)


def test_back_to_back_sessions_never_overlap_and_keep_their_shift(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    old, new = "20261121T000000Z", "20261121T000006Z"
    starts = [box.journal(_at(n, old, f"2026-11-21T00:00:0{2 * n}.500Z"), lead=1.0).start for n in range(3)]
    assert starts == ["2026-11-20T23:59:59.500Z", "2026-11-21T00:00:01.500Z", "2026-11-21T00:00:03.500Z"]
    # The old run's last segment ends at 05.500; the new run's clock says it started at 04.900.
    first = box.journal(_at(3, new, "2026-11-21T00:00:04.900Z"), lead=0.2)
    assert first.start == "2026-11-21T00:00:05.500Z", "a new run starts where the last one ended"
    box.close()
    box = Outbox(tmp_path / "o.sqlite")  # the shift survives a restart
    second = box.journal(_at(4, new, "2026-11-21T00:00:06.900Z"))
    assert second.start == "2026-11-21T00:00:07.500Z", "the whole run moves by one shift, back to back"
    again = box.journal(_at(3, new, "2026-11-21T00:00:04.900Z"))
    assert again.start == first.start and again.seq == first.seq
