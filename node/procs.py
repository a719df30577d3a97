"""Start, watch and stop daemon processes; wait for conditions with a deadline.

Daemons of the devnet outlive the command that starts them (``--detach``), so
they are tracked by pid and process group, not by an asyncio handle. Stopping
is staged: SIGTERM to the group, a bounded wait, then SIGKILL, and the
escalation is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

from node.logs import kv

log = logging.getLogger("camswarm.procs")

# Children this process started, kept so they are reaped (no zombies) and so
# their Popen handles are not collected while the daemon still runs.
_children: dict[int, subprocess.Popen[bytes]] = {}


class ConditionTimeout(TimeoutError):
    """A polled condition did not become true before its deadline."""


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> None:
    """Await ``check()`` until it returns True; raise ConditionTimeout after ``timeout`` seconds.

    Exceptions from ``check`` count as "not yet" (the daemon may still be
    starting); the last one is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if await check():
                return
        except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ConditionTimeout(f"timed out after {timeout:g}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def child_env(env: Mapping[str, str] | None = None, unset_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """Our environment minus variables starting with ``unset_prefixes``, plus ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(tuple(unset_prefixes))}
    return {**inherited, **(env or {})}


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    unset_prefixes: Sequence[str] = (),
) -> int:
    """Start a daemon in its own session (so it survives our exit) with output to ``log_path``.

    Variables starting with any of ``unset_prefixes`` are removed from the
    inherited environment before ``env`` is applied.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(env, unset_prefixes),
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    # Not our child (started by another camswarm command): init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def running_children() -> dict[int, list[str]]:
    """pid -> argv of each daemon :func:`spawn` started that still runs; the exited ones are
    reaped on the way."""
    for pid in list(_children):
        _reap(pid)
    return {pid: list(cast(list[str], child.args)) for pid, child in _children.items()}  # spawn's argv


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    _reap(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def cmdline(pid: int) -> list[bytes]:
    """The argv of ``pid`` ([] if it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.split(b"\0")[:-1] if raw else []


def pid_matches(pid: int, executable: str, *, argument: str | None = None) -> bool:
    """Guard against pid reuse: does ``pid`` run a command whose argv mentions ``executable``
    (and, if given, has ``argument`` as one of its arguments)?"""
    args = cmdline(pid)
    name = os.path.basename(executable).encode()
    if not any(name in arg for arg in args):
        return False
    return argument is None or os.fsencode(argument) in args


def pids_mentioning(path: Path, *, executable: str | None = None) -> list[int]:
    """Live processes with ``path`` inside one of their arguments (and running ``executable``)."""
    needle = os.fsencode(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = cmdline(pid)
        if any(needle in arg for arg in args) and (executable is None or pid_matches(pid, executable)):
            found.append(pid)
    return [pid for pid in found if pid_alive(pid)]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds while zombies remain; check the leader and any member.
    if pid_alive(pgid):
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and pid_alive(int(entry.name)):
                    return True
            except (ProcessLookupError, PermissionError):
                continue
    return False


async def stop_group(pgid: int, *, name: str, term_timeout: float = 10.0) -> str:
    """SIGTERM the process group, wait up to ``term_timeout``, then SIGKILL.

    Returns "gone" (was not running), "stopped" (exited on TERM) or "killed".
    """
    if not group_alive(pgid):
        return "gone"
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "gone"

    try:
        await poll_until(
            lambda: _group_exited(pgid), timeout=term_timeout, what=f"{name} to exit", interval=0.05
        )
        return "stopped"
    except ConditionTimeout:
        log.warning("stop_escalated", extra=kv(process=name, pgid=pgid, after_s=term_timeout, signal="KILL"))
    return "stopped" if await kill_group(pgid, name=name) == "gone" else "killed"


async def kill_group(pgid: int, *, name: str) -> str:
    """SIGKILL the process group at once, a crash: nothing gets to clean up.

    Returns "gone" (was not running) or "killed".
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return "gone"
    await poll_until(
        lambda: _group_exited(pgid), timeout=5.0, what=f"{name} to die after SIGKILL", interval=0.05
    )
    return "killed"


async def _group_exited(pgid: int) -> bool:
    return not group_alive(pgid)


async def run_checked(
    argv: Sequence[str],
    *,
    what: str = "",
    env: Mapping[str, str] | None = None,
    unset_prefixes: Sequence[str] = (),
    error: Callable[[str], Exception] = RuntimeError,
) -> str:
    """Run a short command to its end and return its output (stdout and stderr together).

    A non-zero exit raises ``error`` with ``what`` (default: the command line), the exit
    status and the output.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=child_env(env, unset_prefixes),
    )
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise error(f"{what or ' '.join(argv)} failed (exit {proc.returncode}):\n{text.strip()}")
    return text


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
