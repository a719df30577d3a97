"""linkd: a userspace link emulator between devnet hosts (the kernel here has no netem).

Each devnet host lives in its own network namespace and reaches the shared
bridge through a *pair* of persistent TAP devices the devnet creates first: a
root-side tap enslaved to the bridge and a host-side tap inside the namespace
(carrying the host's address). linkd, one process in the root namespace,
attaches to both taps of every link and copies Ethernet frames between them,
impairing each link on request::

    python -m node.devnet.linkd --settings linkd.json --status linkd-status.json

Settings (JSON, refused as a whole if any field is wrong; impairments default to none)::

    {"generation": 3,
     "links": {"mirror1": {"root_tap": "cs-r-mirror1", "netns": "cs-mirror1",
                           "ns_tap": "cs-n-mirror1",
                           "down": false, "delay_ms": 0, "loss_pct": 0}}}

``down`` drops every frame both ways (a cut host); ``delay_ms`` (0..10000) is
added one way, in each direction, keeping frame order; ``loss_pct`` (0..100)
drops each frame with that probability, in each direction. ``generation`` is a
tag the writer picks (normally increasing): the status echoes the generation
last applied, so a writer knows when its change took effect.

Reconfigure: rewrite the file (:func:`write_settings`), send SIGHUP, then
:func:`wait_applied`. New links are attached, removed ones detached, kept
ones keep their taps and counters. A file that does not parse, or whose taps
cannot be attached, is logged and recorded as ``last_error`` in the status;
the previous settings stay. SIGTERM/SIGINT detach everything and exit 0.

Status (rewritten atomically after each applied generation and every second)::

    {"generation": 3, "pid": 1234, "last_error": null,
     "links": {"mirror1": {"rx_root": 10, "rx_ns": 12, "forwarded": 22,
                           "dropped_loss": 0, "dropped_down": 0, "dropped_full": 0,
                           "dropped_error": 0, "down": false, "delay_ms": 0.0,
                           "loss_pct": 0.0, "error": null}}}

``rx_root``/``rx_ns`` count frames read from each side; ``forwarded`` frames
written to the other side; ``dropped_full`` frames dropped because the other
side would not take them (EAGAIN/ENOBUFS) or the delay queue was full;
``error`` is set when a tap failed (e.g. deleted under linkd): the link is
dead until the next SIGHUP re-attaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import math
import os
import random
import signal
import struct
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.files import write_atomic
from node.logs import RateLimiter, configure_logging, kv
from node.procs import pid_alive

log = logging.getLogger("camswarm.linkd")

MAX_DELAY_MS = 10_000.0
MAX_IFNAME = 15  # IFNAMSIZ - 1
STATUS_INTERVAL = 1.0

_TUNSETIFF = 0x400454CA
_TUNGETIFF = 0x800454D2
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_PERSIST = 0x0800
_CLONE_NEWNET = 0x40000000
_IFREQ = struct.Struct("16sH22x")

# Larger than any frame a tap hands out (MTU up to 64k), so a frame is never cut.
_READ_SIZE = 65536
# Frames per readiness callback: drains a burst in one go, yet one busy link
# cannot starve the others (the reader is level-triggered and fires again).
_BATCH = 512
# Bound on frames held back by delay_ms, per direction; beyond it frames drop
# (counted as dropped_full), as a full router queue would.
_QUEUE_BYTES = 8 << 20
# A delayed frame due within this much is written now: one timer per burst.
_FLUSH_SLACK = 0.001

_LINK_FIELDS = ("root_tap", "netns", "ns_tap", "down", "delay_ms", "loss_pct")


@dataclass(frozen=True)
class LinkSettings:
    """One link: where its taps are and how it is impaired."""

    root_tap: str
    netns: str
    ns_tap: str
    down: bool = False
    delay_ms: float = 0.0
    loss_pct: float = 0.0

    @property
    def endpoints(self) -> tuple[str, str, str]:
        return (self.root_tap, self.netns, self.ns_tap)

    @property
    def impaired(self) -> bool:
        return self.down or self.delay_ms > 0 or self.loss_pct > 0

    def to_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in _LINK_FIELDS}


# --- settings: pure -------------------------------------------------------------------------


def _name(value: object, where: str, *, max_len: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: must be a non-empty string, got {value!r}")
    if "/" in value or value in (".", "..") or any(c.isspace() or c == "\0" for c in value):
        raise ValueError(f"{where}: {value!r} is not a valid name (no '/', spaces or '.'/'..')")
    if max_len is not None and len(value) > max_len:
        raise ValueError(f"{where}: {value!r} is longer than {max_len} characters")
    return value


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{where}: must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _link(obj: object, where: str) -> LinkSettings:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_LINK_FIELDS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(_LINK_FIELDS)})")
    for field in ("root_tap", "netns", "ns_tap"):
        if field not in obj:
            raise ValueError(f"{where}.{field}: missing")
    down = obj.get("down", False)
    if not isinstance(down, bool):
        raise ValueError(f"{where}.down: must be true or false, got {down!r}")
    return LinkSettings(
        root_tap=_name(obj["root_tap"], f"{where}.root_tap", max_len=MAX_IFNAME),
        netns=_name(obj["netns"], f"{where}.netns"),
        ns_tap=_name(obj["ns_tap"], f"{where}.ns_tap", max_len=MAX_IFNAME),
        down=down,
        delay_ms=_number(obj.get("delay_ms", 0), f"{where}.delay_ms", 0.0, MAX_DELAY_MS),
        loss_pct=_number(obj.get("loss_pct", 0), f"{where}.loss_pct", 0.0, 100.0),
    )


def parse_settings(obj: object) -> tuple[int, dict[str, LinkSettings]]:
    """Validate decoded settings JSON; (generation, links by name). ValueError names the bad field."""
    if not isinstance(obj, dict):
        raise ValueError(f"settings: must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - {"generation", "links"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (known: generation, links)")
    generation = obj.get("generation")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation: must be an integer >= 0, got {generation!r}")
    raw_links = obj.get("links")
    if not isinstance(raw_links, dict):
        raise ValueError(f"links: must be an object of links by name, got {raw_links!r}")
    links: dict[str, LinkSettings] = {}
    owner: dict[tuple[str, str], str] = {}
    for name, raw in raw_links.items():
        if not name:
            raise ValueError("links: a link name is empty")
        link = _link(raw, f"links.{name}")
        # A tap carries one link: a second attach would fail (EBUSY) at apply time.
        for field, key in (("root_tap", ("", link.root_tap)), ("ns_tap", (link.netns, link.ns_tap))):
            if key in owner:
                raise ValueError(f"links.{name}.{field}: {key[1]!r} is already used by link {owner[key]!r}")
            owner[key] = name
        links[name] = link
    return generation, links


def settings_json(generation: int, links: Mapping[str, LinkSettings]) -> dict[str, Any]:
    return {"generation": generation, "links": {name: link.to_json() for name, link in links.items()}}


def read_settings(path: Path) -> tuple[int, dict[str, LinkSettings]]:
    """Parse a settings file; ValueError (naming the file and field) or OSError."""
    text = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    try:
        return parse_settings(obj)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_settings(path: Path, generation: int, links: Mapping[str, LinkSettings]) -> None:
    """Write a settings file atomically; refuses (ValueError) what linkd would refuse."""
    obj = settings_json(generation, links)
    parse_settings(obj)
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True) + "\n", durable=False)


async def wait_applied(
    status_path: Path,
    generation: int,
    timeout: float,
    *,
    pid: int | None = None,
    interval: float = 0.05,
) -> dict[str, Any]:
    """Poll linkd's status until it reports ``generation`` applied; the status dict.

    With ``pid``, only a status written by that process counts, and its death
    ends the wait early (RuntimeError). TimeoutError names the generation, the
    one applied and linkd's last error.
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while True:
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(status_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                status = loaded
        if status is not None and status.get("generation") == generation and pid in (None, status.get("pid")):
            return status
        if pid is not None and not pid_alive(pid):
            raise RuntimeError(f"linkd (pid {pid}) exited before applying settings generation {generation}")
        if time.monotonic() >= deadline:
            seen = (
                "no status yet"
                if status is None
                else (
                    f"status has generation {status.get('generation')!r} from pid {status.get('pid')!r}, "
                    f"last error: {status.get('last_error')}"
                )
            )
            raise TimeoutError(
                f"linkd did not apply settings generation {generation} within {timeout:g}s "
                f"({status_path}: {seen})"
            )
        await asyncio.sleep(interval)


# --- taps and namespaces --------------------------------------------------------------------


class AttachError(Exception):
    """A tap of a link could not be attached; the message names it."""


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if int(_libc.setns(fd, _CLONE_NEWNET)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextlib.contextmanager
def _in_netns(netns: str, home_fd: int) -> Iterator[None]:
    """Run the block in ``/run/netns/<netns>``, then return to ``home_fd``'s namespace."""
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AttachError(f"no network namespace {netns!r} (/run/netns/{netns})") from None
    try:
        _setns(target)
    finally:
        os.close(target)
    try:
        yield
    finally:
        # Failing here would leave linkd in the wrong namespace: let it propagate and end linkd.
        _setns(home_fd)


def _attach_tap(name: str, where: str) -> int:
    """A non-blocking fd on the existing persistent tap ``name`` of the current namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.ioctl(fd, _TUNSETIFF, _IFREQ.pack(name.encode(), _IFF_TAP | _IFF_NO_PI))
        except OSError as exc:
            reason = {
                errno.EBUSY: "is already attached (another linkd running?)",
                errno.EINVAL: "exists but is not a tap device",
                errno.EPERM: "cannot be attached without CAP_NET_ADMIN",
            }.get(exc.errno or 0, f"cannot be attached: {exc.strerror}")
            raise AttachError(f"tap {name!r} {where} {reason}") from None
        _, flags = struct.unpack_from("16sH", fcntl.ioctl(fd, _TUNGETIFF, bytes(_IFREQ.size)))
        # TUNSETIFF creates a tap when none exists; a fresh one is not persistent and
        # vanishes with this fd, which is what we want for a mistyped name.
        if not flags & _IFF_PERSIST:
            raise AttachError(f"no tap {name!r} {where} (create it with `ip tuntap add`)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_link_taps(settings: LinkSettings, home_fd: int) -> tuple[int, int]:
    """Attach both taps of a link: (root fd, namespace fd)."""
    root = _attach_tap(settings.root_tap, "in the root namespace")
    try:
        with _in_netns(settings.netns, home_fd):
            inner = _attach_tap(settings.ns_tap, f"in namespace {settings.netns!r}")
    except BaseException:
        os.close(root)
        raise
    return root, inner


# --- forwarding -----------------------------------------------------------------------------


class Counters:
    __slots__ = (
        "dropped_down",
        "dropped_error",
        "dropped_full",
        "dropped_loss",
        "forwarded",
        "rx_ns",
        "rx_root",
    )

    def __init__(self) -> None:
        self.rx_root = self.rx_ns = self.forwarded = 0
        self.dropped_loss = self.dropped_down = self.dropped_full = self.dropped_error = 0

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in sorted(self.__slots__)}


class _Direction:
    """One way of a link: frames read from ``src`` are written to ``dst``."""

    def __init__(self, link: Link, src: int, dst: int, from_root: bool) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.from_root = from_root
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued_bytes = 0
        self.timer: asyncio.TimerHandle | None = None

    def on_readable(self) -> None:
        link = self.link
        counters = link.counters
        src, dst, read, write = self.src, self.dst, os.read, os.write
        received = 0
        for _ in range(_BATCH):
            try:
                frame = read(src, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                link.fail(exc)
                break
            received += 1
            if link.impaired or self.queue:
                self._impaired(frame)
                continue
            try:
                write(dst, frame)
            except OSError as exc:
                link.write_failed(exc)
            else:
                counters.forwarded += 1
        if self.from_root:
            counters.rx_root += received
        else:
            counters.rx_ns += received

    def _impaired(self, frame: bytes) -> None:
        link, settings, counters = self.link, self.link.settings, self.link.counters
        if settings.down:
            counters.dropped_down += 1
        elif settings.loss_pct and link.rng.random() * 100.0 < settings.loss_pct:
            counters.dropped_loss += 1
        elif self.queued_bytes + len(frame) > _QUEUE_BYTES:
            counters.dropped_full += 1
        else:
            # Behind any queued frame even when the delay is now 0: order is kept.
            due = link.loop.time() + settings.delay_ms / 1000.0
            self.queue.append((due, frame))
            self.queued_bytes += len(frame)
            if self.timer is None:
                self.timer = link.loop.call_at(due, self._flush)

    def _flush(self) -> None:
        self.timer = None
        link, queue = self.link, self.queue
        horizon = link.loop.time() + _FLUSH_SLACK
        while queue and queue[0][0] <= horizon:
            _, frame = queue.popleft()
            self.queued_bytes -= len(frame)
            try:
                os.write(self.dst, frame)
            except OSError as exc:
                link.write_failed(exc)
            else:
                link.counters.forwarded += 1
        if queue:
            self.timer = link.loop.call_at(queue[0][0], self._flush)

    def clear(self) -> int:
        """Forget queued frames (and their timer); how many there were."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        count = len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return count


class Link:
    """Two attached taps and the frames between them. Owns (and closes) both fds."""

    def __init__(
        self,
        name: str,
        settings: LinkSettings,
        root_fd: int,
        ns_fd: int,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        limiter: RateLimiter,
    ) -> None:
        self.name = name
        self.settings = settings
        self.impaired = settings.impaired  # read per frame: a plain attribute, not the property
        self.loop = loop
        self.rng = rng
        self.counters = Counters()
        self.error: str | None = None
        self._closed = False
        self._limiter = limiter
        self._fds = (root_fd, ns_fd)
        self._directions = (_Direction(self, root_fd, ns_fd, True), _Direction(self, ns_fd, root_fd, False))
        for direction in self._directions:
            loop.add_reader(direction.src, direction.on_readable)

    def update(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.impaired = settings.impaired
        if settings.down:
            # A cut link loses what was in flight, both ways.
            self.counters.dropped_down += sum(direction.clear() for direction in self._directions)

    def fail(self, exc: OSError) -> None:
        """A tap is gone or broken: stop reading; the link waits for a re-attach."""
        self.error = f"{exc.strerror or exc} (errno {exc.errno})"
        self._stop()
        log.error("link_failed", extra=kv(link=self.name, error=self.error))

    def write_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
            self.counters.dropped_full += 1
            return
        self.counters.dropped_error += 1
        allowed, suppressed = self._limiter.allow(f"write:{self.name}")
        if allowed:
            log.warning("write_failed", extra=kv(link=self.name, error=exc, suppressed=suppressed))

    def _stop(self) -> None:
        for direction in self._directions:
            self.loop.remove_reader(direction.src)
            direction.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop()
        for fd in self._fds:
            os.close(fd)

    def to_json(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **self.counters.to_json(),
            "down": settings.down,
            "delay_ms": settings.delay_ms,
            "loss_pct": settings.loss_pct,
            "error": self.error,
        }


class Linkd:
    """The attached links, one generation of settings at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, status_path: Path, rng: random.Random) -> None:
        self.loop = loop
        self.status_path = status_path
        self.rng = rng
        self.generation: int | None = None
        self.last_error: str | None = None
        self.links: dict[str, Link] = {}
        self._limiter = RateLimiter(30.0)
        self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def apply(self, generation: int, wanted: Mapping[str, LinkSettings]) -> None:
        """Attach new links, detach removed ones, re-impair kept ones; all or nothing."""
        # A link is kept by its taps, not its name: renaming a link keeps its fds.
        by_endpoints = {link.settings.endpoints: link for link in self.links.values() if link.error is None}
        for link in self.links.values():
            if link.error is not None:  # broken: free its taps so they can be re-attached below
                link.close()
        kept: dict[str, Link] = {}
        opened: dict[str, Link] = {}
        try:
            for name, settings in wanted.items():
                old = by_endpoints.pop(settings.endpoints, None)
                if old is not None:
                    kept[name] = old
                    continue
                root_fd, ns_fd = open_link_taps(settings, self._home_fd)
                opened[name] = Link(name, settings, root_fd, ns_fd, self.loop, self.rng, self._limiter)
        except BaseException:
            for link in opened.values():
                link.close()
            raise
        for link in by_endpoints.values():
            link.close()
        for name, link in kept.items():
            link.name = name
            link.update(wanted[name])
        self.links = {name: kept.get(name) or opened[name] for name in wanted}
        self.generation = generation
        self.last_error = None
        log.info(
            "applied",
            extra=kv(
                generation=generation,
                links=len(wanted),
                attached=",".join(opened) or "-",
                impaired=",".join(n for n, s in wanted.items() if s.impaired) or "-",
            ),
        )
        self.write_status()

    def reload(self, settings_path: Path) -> None:
        """SIGHUP: apply the settings file, or keep the current settings and record why not."""
        try:
            generation, wanted = read_settings(settings_path)
            self.apply(generation, wanted)
        except (OSError, ValueError, AttachError) as exc:
            self.last_error = str(exc)
            log.error("settings_rejected", extra=kv(path=settings_path, error=exc, kept=self.generation))
            self.write_status()

    def status(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "pid": os.getpid(),
            "last_error": self.last_error,
            "links": {name: link.to_json() for name, link in self.links.items()},
        }

    def write_status(self) -> None:
        try:
            # Not durable: a status is rewritten every second; only atomicity matters.
            write_atomic(self.status_path, json.dumps(self.status(), sort_keys=True) + "\n", durable=False)
        except OSError as exc:
            allowed, suppressed = self._limiter.allow("status")
            if allowed:
                log.error(
                    "status_write_failed", extra=kv(path=self.status_path, error=exc, suppressed=suppressed)
                )

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links = {}
        os.close(self._home_fd)


async def run(settings_path: Path, status_path: Path, *, seed: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 then, 1 if the first settings cannot be applied."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    daemon = Linkd(loop, status_path, random.Random(seed))
    try:
        # Before the first apply: a SIGHUP sent early must not kill linkd.
        loop.add_signal_handler(signal.SIGHUP, daemon.reload, settings_path)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            generation, wanted = read_settings(settings_path)
            daemon.apply(generation, wanted)
        except (OSError, ValueError, AttachError) as exc:
            log.error("start_failed", extra=kv(path=settings_path, error=exc))
            return 1
        log.info("started", extra=kv(pid=os.getpid(), settings=settings_path, status=status_path))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_INTERVAL)
            daemon.write_status()
        log.info("stopped", extra=kv(generation=daemon.generation))
        return 0
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        daemon.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node.devnet.linkd",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--settings", type=Path, required=True, help="settings JSON, re-read on SIGHUP")
    parser.add_argument("--status", type=Path, required=True, help="status JSON, written by linkd")
    parser.add_argument("--seed", type=int, default=None, help="seed for loss_pct (reproducible drops)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return asyncio.run(run(args.settings, args.status, seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
