"""linkd (node/devnet/linkd.py): settings validation, the status wait, and forwarding over fake taps.

Datagram socketpairs stand in for taps (one read is one frame), so the
impairments and the apply/reload bookkeeping run without root.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from node.devnet import linkd
from node.devnet.linkd import (
    AttachError,
    Link,
    Linkd,
    LinkSettings,
    parse_settings,
    wait_applied,
    write_settings,
)
from node.logs import RateLimiter
from node.procs import poll_until

pytestmark = pytest.mark.unit

LINK = {"root_tap": "cs-r-mirror1", "netns": "cs-mirror1", "ns_tap": "cs-n-mirror1"}
BASE = LinkSettings(root_tap="cs-r-mirror1", netns="cs-mirror1", ns_tap="cs-n-mirror1")


def settings(**link: Any) -> dict[str, Any]:
    return {"generation": 1, "links": {"mirror1": {**LINK, **link}}}


# --- parse_settings -------------------------------------------------------------------------


def test_defaults_are_no_impairment() -> None:
    generation, links = parse_settings(settings())
    assert generation == 1
    assert links == {"mirror1": BASE}
    assert not links["mirror1"].impaired


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"down": True}, replace(BASE, down=True), id="down"),
        pytest.param({"delay_ms": 50}, replace(BASE, delay_ms=50.0), id="delay-int"),
        pytest.param({"delay_ms": 10000}, replace(BASE, delay_ms=10000.0), id="delay-max"),
        pytest.param({"loss_pct": 12.5}, replace(BASE, loss_pct=12.5), id="loss-float"),
        pytest.param({"loss_pct": 100}, replace(BASE, loss_pct=100.0), id="loss-max"),
        pytest.param({"root_tap": "r" * 15}, replace(BASE, root_tap="r" * 15), id="tap-15"),
    ],
)
def test_valid_links(fields: dict[str, Any], expected: LinkSettings) -> None:
    _, links = parse_settings(settings(**fields))
    assert links["mirror1"] == expected
    assert links["mirror1"].impaired == (expected.down or expected.delay_ms > 0 or expected.loss_pct > 0)


def _without(key: str) -> dict[str, Any]:
    doc = settings()
    del doc["links"]["mirror1"][key]
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param([], "settings: must be an object", id="not-object"),
        pytest.param({**settings(), "extra": 1}, "extra: unknown field", id="unknown-top"),
        pytest.param({"links": {}}, "generation: must be an integer", id="generation-missing"),
        pytest.param({"generation": -1, "links": {}}, "generation: must be an integer >= 0", id="gen-neg"),
        pytest.param({"generation": True, "links": {}}, "generation: must be an integer", id="gen-bool"),
        pytest.param({"generation": 1.0, "links": {}}, "generation: must be an integer", id="gen-float"),
        pytest.param({"generation": "1", "links": {}}, "generation: must be an integer", id="gen-str"),
        pytest.param({"generation": 1}, "links: must be an object", id="links-missing"),
        pytest.param({"generation": 1, "links": []}, "links: must be an object", id="links-list"),
        pytest.param({"generation": 1, "links": {"": LINK}}, "links: a link name is empty", id="name-empty"),
        pytest.param({"generation": 1, "links": {"m": "x"}}, "links.m: must be an object", id="link-str"),
        pytest.param(settings(speed=1), "links.mirror1.speed: unknown field", id="link-unknown"),
        pytest.param(_without("root_tap"), "links.mirror1.root_tap: missing", id="root-tap-missing"),
        pytest.param(_without("netns"), "links.mirror1.netns: missing", id="netns-missing"),
        pytest.param(_without("ns_tap"), "links.mirror1.ns_tap: missing", id="ns-tap-missing"),
        pytest.param(settings(root_tap=""), "links.mirror1.root_tap: must be a non-empty", id="root-empty"),
        pytest.param(settings(root_tap=7), "links.mirror1.root_tap: must be a non-empty", id="root-int"),
        pytest.param(
            settings(root_tap="r" * 16),
            "links.mirror1.root_tap: 'rrrrrrrrrrrrrrrr' is longer than 15",
            id="root-16",
        ),
        pytest.param(
            settings(root_tap="a/b"), "links.mirror1.root_tap: 'a/b' is not a valid name", id="root-slash"
        ),
        pytest.param(
            settings(ns_tap="n" * 16),
            "links.mirror1.ns_tap: 'nnnnnnnnnnnnnnnn' is longer than 15",
            id="ns-tap-16",
        ),
        pytest.param(
            settings(ns_tap="a b"), "links.mirror1.ns_tap: 'a b' is not a valid name", id="ns-tap-space"
        ),
        pytest.param(settings(netns=""), "links.mirror1.netns: must be a non-empty", id="netns-empty"),
        pytest.param(
            settings(netns=".."), "links.mirror1.netns: '..' is not a valid name", id="netns-dotdot"
        ),
        pytest.param(
            settings(netns="../x"), "links.mirror1.netns: '../x' is not a valid name", id="netns-slash"
        ),
        pytest.param(settings(down=1), "links.mirror1.down: must be true or false, got 1", id="down-int"),
        pytest.param(settings(down="false"), "links.mirror1.down: must be true or false", id="down-str"),
        pytest.param(
            settings(delay_ms=-1),
            "links.mirror1.delay_ms: must be between 0 and 10000, got -1",
            id="delay-neg",
        ),
        pytest.param(
            settings(delay_ms=10000.5), "links.mirror1.delay_ms: must be between 0 and 10000", id="delay-big"
        ),
        pytest.param(
            settings(delay_ms=True), "links.mirror1.delay_ms: must be a number, got True", id="delay-bool"
        ),
        pytest.param(settings(delay_ms="50"), "links.mirror1.delay_ms: must be a number", id="delay-str"),
        pytest.param(
            settings(delay_ms=float("nan")), "links.mirror1.delay_ms: must be a number", id="delay-nan"
        ),
        pytest.param(
            settings(loss_pct=-0.1), "links.mirror1.loss_pct: must be between 0 and 100", id="loss-neg"
        ),
        pytest.param(
            settings(loss_pct=100.1), "links.mirror1.loss_pct: must be between 0 and 100", id="loss-big"
        ),
        pytest.param(
            settings(loss_pct=None), "links.mirror1.loss_pct: must be a number, got None", id="loss-none"
        ),
        pytest.param(
            {"generation": 1, "links": {"a": LINK, "b": {**LINK, "netns": "other", "ns_tap": "x"}}},
            "links.b.root_tap: 'cs-r-mirror1' is already used by link 'a'",
            id="root-tap-twice",
        ),
        pytest.param(
            {"generation": 1, "links": {"a": LINK, "b": {**LINK, "root_tap": "x"}}},
            "links.b.ns_tap: 'cs-n-mirror1' is already used by link 'a'",
            id="ns-tap-twice",
        ),
    ],
)
def test_bad_settings_name_the_field(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_settings(doc)


def test_same_ns_tap_name_in_two_namespaces_is_fine() -> None:
    doc = {"generation": 1, "links": {"a": LINK, "b": {**LINK, "root_tap": "x", "netns": "cs-mirror2"}}}
    assert set(parse_settings(doc)[1]) == {"a", "b"}


def test_write_settings_round_trips_and_refuses_what_linkd_refuses(tmp_path: Path) -> None:
    path = tmp_path / "linkd.json"
    links = {"mirror1": replace(BASE, delay_ms=50, loss_pct=5)}
    write_settings(path, 7, links)
    assert linkd.read_settings(path) == (7, links)
    with pytest.raises(ValueError, match=r"links\.mirror1\.delay_ms"):
        write_settings(path, 8, {"mirror1": replace(BASE, delay_ms=-5)})
    assert linkd.read_settings(path)[0] == 7, "a refused write leaves the file alone"


def test_read_settings_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "linkd.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"^{path}: not JSON"):
        linkd.read_settings(path)
    path.write_text(json.dumps(settings(loss_pct=101)))
    with pytest.raises(ValueError, match=f"^{path}: links.mirror1.loss_pct"):
        linkd.read_settings(path)


# --- wait_applied ---------------------------------------------------------------------------


async def test_wait_applied_returns_the_status_once_the_generation_appears(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"generation": 1, "pid": os.getpid(), "links": {}}))
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, status.write_text, json.dumps({"generation": 2, "pid": os.getpid(), "links": {}}))
    result = await wait_applied(status, 2, timeout=5, pid=os.getpid(), interval=0.01)
    assert result["generation"] == 2


async def test_wait_applied_timeout_names_generation_and_last_error(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    status.write_text(
        json.dumps({"generation": 1, "pid": 1, "last_error": "links.a.delay_ms: bad", "links": {}})
    )
    with pytest.raises(
        TimeoutError, match=r"generation 2 within 0.05s .*generation 1 .*links.a.delay_ms: bad"
    ):
        await wait_applied(status, 2, timeout=0.05, interval=0.01)
    with pytest.raises(TimeoutError, match=r"generation 3 within 0\.05s .*no status yet"):
        await wait_applied(tmp_path / "missing.json", 3, timeout=0.05, interval=0.01)


async def test_wait_applied_ignores_another_pids_status_and_stops_when_pid_dies(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"generation": 2, "pid": 1, "links": {}}))
    with pytest.raises(TimeoutError, match="generation 2"):
        await wait_applied(status, 2, timeout=0.05, pid=os.getpid(), interval=0.01)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "")
    await child.wait()
    dead = child.pid
    with pytest.raises(RuntimeError, match=f"pid {dead}\\) exited before applying settings generation 2"):
        await wait_applied(status, 2, timeout=5, pid=dead, interval=0.01)


# --- forwarding over fake taps --------------------------------------------------------------


class FakeTaps:
    """Socketpairs standing in for a link's two taps; the test holds the far ends."""

    def __init__(self) -> None:
        self.root, root_inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ns, ns_inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (self.root, self.ns, root_inner, ns_inner):
            sock.setblocking(False)
        # linkd's Link owns (and closes) its fds, as it does real taps.
        self.fds = (root_inner.detach(), ns_inner.detach())

    def close(self) -> None:
        self.root.close()
        self.ns.close()


@pytest.fixture
def taps() -> Iterator[FakeTaps]:
    pair = FakeTaps()
    yield pair
    pair.close()


def make_link(taps: FakeTaps, settings: LinkSettings, seed: int = 1) -> Link:
    loop = asyncio.get_running_loop()
    return Link("l", settings, *taps.fds, loop, random.Random(seed), RateLimiter())


async def recv(sock: socket.socket, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), timeout)


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    """Wait (polling, with a deadline) until linkd's reader has done what ``condition`` checks."""

    async def check() -> bool:
        return condition()

    await poll_until(check, timeout=timeout, what=what, interval=0.001)


async def no_frame(sock: socket.socket, within: float = 0.1) -> bool:
    try:
        await recv(sock, within)
    except TimeoutError:
        return True
    return False


PLAIN = LinkSettings("r", "n", "t")


async def test_unimpaired_frames_cross_both_ways(taps: FakeTaps) -> None:
    link = make_link(taps, PLAIN)
    try:
        taps.root.send(b"to-host")
        taps.ns.send(b"to-bridge")
        assert await recv(taps.ns) == b"to-host"
        assert await recv(taps.root) == b"to-bridge"
        counters = link.to_json()
        assert (counters["rx_root"], counters["rx_ns"], counters["forwarded"]) == (1, 1, 2)
        assert counters["down"] is False and counters["error"] is None
    finally:
        link.close()


async def test_down_drops_both_ways_and_heals(taps: FakeTaps) -> None:
    link = make_link(taps, LinkSettings("r", "n", "t", down=True))
    try:
        taps.root.send(b"a")
        taps.ns.send(b"b")
        assert await no_frame(taps.ns) and await no_frame(taps.root)
        assert link.counters.dropped_down == 2
        link.update(PLAIN)
        taps.root.send(b"c")
        assert await recv(taps.ns) == b"c"
    finally:
        link.close()


async def test_delay_holds_each_frame_and_keeps_order(taps: FakeTaps) -> None:
    loop = asyncio.get_running_loop()
    link = make_link(taps, LinkSettings("r", "n", "t", delay_ms=40))
    try:
        sent = loop.time()
        for i in range(50):
            taps.root.send(b"%d" % i)
        got = [await recv(taps.ns) for _ in range(50)]
        assert loop.time() - sent >= 0.039
        assert got == [b"%d" % i for i in range(50)]
        # Delay removed while frames wait: later frames queue behind them, never overtake.
        for i in range(5):
            taps.ns.send(b"q%d" % i)
        await until(lambda: link.counters.rx_ns == 5, "the reader to queue them")
        link.update(PLAIN)
        taps.ns.send(b"after")
        assert [await recv(taps.root) for _ in range(6)] == [b"q0", b"q1", b"q2", b"q3", b"q4", b"after"]
        assert link.counters.forwarded == 56
    finally:
        link.close()


async def test_cutting_a_delayed_link_drops_what_is_in_flight(taps: FakeTaps) -> None:
    link = make_link(taps, LinkSettings("r", "n", "t", delay_ms=200))
    try:
        taps.root.send(b"in-flight")
        await until(lambda: link.counters.rx_root == 1, "linkd to read it (and hold it for 200 ms)")
        link.update(LinkSettings("r", "n", "t", down=True))
        assert link.counters.dropped_down == 1
        assert await no_frame(taps.ns, within=0.3)
    finally:
        link.close()


async def test_loss_drops_about_the_share_asked(taps: FakeTaps) -> None:
    link = make_link(taps, LinkSettings("r", "n", "t", loss_pct=30), seed=7)
    try:
        for i in range(200):
            taps.root.send(b"%d" % i)
            if i % 50 == 49:  # stay under the socket buffer
                await until(lambda n=i + 1: link.counters.rx_root == n, f"linkd to read {i + 1} frames")
        received = 0
        while not await no_frame(taps.ns, within=0.1):
            received += 1
        assert link.counters.rx_root == 200
        assert link.counters.dropped_loss + received == 200
        assert 100 <= received <= 180
    finally:
        link.close()


async def test_a_failing_tap_marks_the_link_and_stops_reading(taps: FakeTaps) -> None:
    link = make_link(taps, PLAIN)
    try:
        link.fail(OSError(77, "File descriptor in bad state"))
        assert link.to_json()["error"] == "File descriptor in bad state (errno 77)"
        taps.root.send(b"ignored")
        assert await no_frame(taps.ns)
    finally:
        link.close()
        link.close()  # idempotent


# --- Linkd.apply: generations, kept links, rollback ------------------------------------------


class FakeOpener:
    def __init__(self) -> None:
        self.opened: list[FakeTaps] = []
        self.fail_on: str | None = None

    def __call__(self, settings: LinkSettings, home_fd: int) -> tuple[int, int]:
        if settings.root_tap == self.fail_on:
            raise AttachError(f"no tap {settings.root_tap!r} in the root namespace")
        pair = FakeTaps()
        self.opened.append(pair)
        return pair.fds

    def close(self) -> None:
        for pair in self.opened:
            pair.close()


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpener]:
    fake = FakeOpener()
    monkeypatch.setattr(linkd, "open_link_taps", fake)
    yield fake
    fake.close()


def detached(pair: FakeTaps) -> bool:
    """Did linkd close its ends of ``pair``? (fd numbers get reused: ask the far ends.)"""
    for sock in (pair.root, pair.ns):
        try:
            sock.send(b"probe")
        except ConnectionRefusedError:
            continue
        return False
    return True


async def test_apply_attaches_keeps_renames_and_detaches(tmp_path: Path, opener: FakeOpener) -> None:
    status_path = tmp_path / "status.json"
    daemon = Linkd(asyncio.get_running_loop(), status_path, random.Random(1))
    try:
        a, b = LinkSettings("ra", "na", "ta"), LinkSettings("rb", "nb", "tb")
        daemon.apply(1, {"a": a, "b": b})
        assert len(opener.opened) == 2
        first_a = daemon.links["a"]
        status = json.loads(status_path.read_text())
        assert status["generation"] == 1 and status["pid"] == os.getpid() and status["last_error"] is None
        assert set(status["links"]) == {"a", "b"}

        # Same taps, new impairment, new name for b; a third link; nothing re-opened but the third.
        c = LinkSettings("rc", "nc", "tc")
        daemon.apply(2, {"a": LinkSettings("ra", "na", "ta", delay_ms=5), "b2": b, "c": c})
        assert len(opener.opened) == 3
        assert daemon.links["a"] is first_a and daemon.links["a"].settings.delay_ms == 5
        assert daemon.links["b2"].name == "b2"
        daemon.apply(3, {"a": a})
        assert set(daemon.links) == {"a"}
        assert [detached(pair) for pair in opener.opened] == [False, True, True]
        assert json.loads(status_path.read_text())["generation"] == 3
    finally:
        daemon.close()


async def test_a_failed_attach_keeps_the_previous_generation(tmp_path: Path, opener: FakeOpener) -> None:
    status_path, settings_path = tmp_path / "status.json", tmp_path / "linkd.json"
    daemon = Linkd(asyncio.get_running_loop(), status_path, random.Random(1))
    try:
        a = LinkSettings("ra", "na", "ta")
        daemon.apply(1, {"a": a})
        opener.fail_on = "rz"
        write_settings(
            settings_path,
            2,
            {"a": a, "y": LinkSettings("ry", "ny", "ty"), "z": LinkSettings("rz", "nz", "tz")},
        )
        daemon.reload(settings_path)
        status = json.loads(status_path.read_text())
        assert status["generation"] == 1
        assert status["last_error"] == "no tap 'rz' in the root namespace"
        assert set(status["links"]) == {"a"}
        assert detached(opener.opened[1]), "y was attached, then rolled back"

        settings_path.write_text(json.dumps(settings(delay_ms=20000)))
        daemon.reload(settings_path)
        status = json.loads(status_path.read_text())
        assert status["generation"] == 1
        assert "links.mirror1.delay_ms: must be between 0 and 10000" in status["last_error"]

        opener.fail_on = None
        write_settings(settings_path, 4, {"a": a})
        daemon.reload(settings_path)
        status = json.loads(status_path.read_text())
        assert (status["generation"], status["last_error"]) == (4, None)
    finally:
        daemon.close()


async def test_a_broken_link_is_reattached_on_the_next_apply(tmp_path: Path, opener: FakeOpener) -> None:
    daemon = Linkd(asyncio.get_running_loop(), tmp_path / "status.json", random.Random(1))
    try:
        a = LinkSettings("ra", "na", "ta")
        daemon.apply(1, {"a": a})
        daemon.links["a"].fail(OSError(77, "File descriptor in bad state"))
        daemon.apply(2, {"a": a})
        assert len(opener.opened) == 2
        assert daemon.links["a"].error is None
        assert detached(opener.opened[0]) and not detached(opener.opened[1])
    finally:
        daemon.close()
