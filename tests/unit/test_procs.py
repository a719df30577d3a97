"""node/procs.py: short commands and process groups (a `sleep` child stands in for a daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.procs import group_alive, kill_group, run_checked, running_children, spawn, stop_group

pytestmark = pytest.mark.unit


class Refused(RuntimeError):
    pass


async def test_run_checked_returns_the_output() -> None:
    assert await run_checked(["sh", "-c", "echo out; echo err >&2"]) == "out\nerr\n"


async def test_run_checked_raises_the_given_error_with_status_and_output() -> None:
    with pytest.raises(Refused, match=r"^the step failed \(exit 3\):\nwhy$"):
        await run_checked(["sh", "-c", "echo why; exit 3"], what="the step", error=Refused)


async def test_run_checked_names_the_command_when_not_told_what() -> None:
    with pytest.raises(RuntimeError, match=r"^false failed \(exit 1\)"):
        await run_checked(["false"])


@pytest.mark.parametrize(("stop", "outcome"), [("kill", "killed"), ("stop", "stopped")])
async def test_a_group_is_ended_then_reported_gone(tmp_path: Path, stop: str, outcome: str) -> None:
    pid = spawn(["sleep", "60"], log_path=tmp_path / "sleep.log")
    try:
        assert group_alive(pid)
        first = await kill_group(pid, name="sleep") if stop == "kill" else await stop_group(pid, name="sleep")
        assert first == outcome
        assert not group_alive(pid)
        assert await kill_group(pid, name="sleep") == "gone"
        assert await stop_group(pid, name="sleep") == "gone"
    finally:
        if group_alive(pid):
            await kill_group(pid, name="sleep")


async def test_running_children_names_a_live_daemon_until_it_is_stopped(tmp_path: Path) -> None:
    pid = spawn(["sleep", "60"], log_path=tmp_path / "sleep.log")
    try:
        assert running_children()[pid] == ["sleep", "60"]
    finally:
        await stop_group(pid, name="sleep")
    assert pid not in running_children(), "a stopped child is reaped, not reported"
