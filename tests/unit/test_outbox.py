"""The outbox state machine: any interleaving of failures and crashes ends with
every segment done exactly once, in order."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.outbox import JOURNALED, STEPS, NewSegment, Outbox, backoff, next_step


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
