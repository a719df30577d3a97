"""Logging, process supervision, HTTP error parsing, toolchain and CLI parsing."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node import toolchain
from node.cli import build_parser
from node.http_client import HTTPDaemonClient
from node.logs import KeyValueFormatter, RateLimiter, format_kv, kv
from node.procs import ConditionTimeout, pid_alive, poll_until, spawn, stop_group, tail


def test_format_kv_quotes_only_when_needed() -> None:
    assert format_kv({"a": 1, "b": "x y", "c": "", "d": 'q"e'}) == 'a=1 b="x y" c="" d="q\\"e"'


def test_formatter_one_line_per_event() -> None:
    record = logging.LogRecord("camswarm.t", logging.WARNING, __file__, 1, "segment_added", None, None)
    record.__dict__.update(kv(seq=5, path="/a b"))
    line = KeyValueFormatter().format(record)
    assert "\n" not in line
    assert 'level=warning logger=camswarm.t event=segment_added seq=5 path="/a b"' in line


def test_rate_limiter_with_injected_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(interval=10, clock=lambda: now[0])
    assert limiter.allow("kubo") == (True, 0)
    assert limiter.allow("kubo") == (False, 0)
    assert limiter.allow("kubo") == (False, 0)
    assert limiter.allow("cluster") == (True, 0)
    now[0] = 10.5
    assert limiter.allow("kubo") == (True, 2)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b'{"Message":"file does not exist","Code":0,"Type":"error"}', "file does not exist", id="kubo"
        ),
        pytest.param(b'{"code":404,"message":"not found"}', "not found", id="cluster"),
        pytest.param(b"404 page not found\n", "404 page not found", id="plain"),
        pytest.param(b"", "HTTP 502", id="empty"),
    ],
)
def test_error_message(body: bytes, expected: str) -> None:
    assert HTTPDaemonClient.error_message(502, body) == expected


async def test_poll_until_times_out_with_reason() -> None:
    async def never() -> bool:
        raise OSError("connection refused")

    with pytest.raises(ConditionTimeout, match=r"waiting for the thing .*connection refused"):
        await poll_until(never, timeout=0.2, what="the thing", interval=0.05)


async def test_poll_until_returns_when_true() -> None:
    calls = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await poll_until(third_time, timeout=5, what="x", interval=0.01)
    assert len(calls) == 3


IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(60)
"""


@pytest.fixture
async def children() -> AsyncIterator[list[int]]:
    """Pids a test spawns; whatever is still running at teardown is killed, even after a failure."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        await stop_group(pid, name="test child", term_timeout=0.1)


async def test_stop_escalates_to_kill(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, children: list[int]
) -> None:
    log = tmp_path / "child.log"
    pid = spawn([sys.executable, "-c", IGNORES_TERM], log_path=log)
    children.append(pid)

    async def started() -> bool:
        return "up" in tail(log)

    await poll_until(started, timeout=10, what="child to start")
    assert pid_alive(pid)
    with caplog.at_level(logging.WARNING):
        assert await stop_group(pid, name="stubborn", term_timeout=0.3) == "killed"
    assert not pid_alive(pid)
    assert "stop_escalated" in caplog.text
    assert await stop_group(pid, name="stubborn") == "gone"


async def test_stop_graceful(tmp_path: Path, children: list[int]) -> None:
    pid = spawn([sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "c.log")
    children.append(pid)
    started = time.monotonic()
    assert await stop_group(pid, name="sleeper", term_timeout=5) == "stopped"
    assert time.monotonic() - started < 5
    assert not pid_alive(pid)


def test_toolchain_paths_are_versioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMSWARM_TOOLS", str(tmp_path))
    paths = toolchain.tool_paths()
    assert paths.ipfs == tmp_path / f"kubo-{toolchain.KUBO_VERSION}" / "bin" / "ipfs"
    assert toolchain.FERRETDB_VERSION in str(paths.ferretdb)
    with pytest.raises(toolchain.ToolMissing, match="make deps"):
        toolchain.require(paths.ipfs)
    with pytest.raises(toolchain.ToolMissing, match="Debian package nosuch"):
        toolchain.require_system("camswarm-no-such-tool", "nosuch")


def test_cli_parser() -> None:
    args = build_parser().parse_args(["devnet", "up", "--dir", "/tmp/x", "--mirrors", "3", "--detach"])
    assert (args.dir, args.mirrors, args.cameras, args.detach) == ("/tmp/x", 3, 2, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["devnet", "camera", "pause", "cam1", "--dir", "/tmp/x"])
