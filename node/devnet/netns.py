"""``camswarm devnet up --netns``: every host of the devnet in a network namespace of its own.

Hosts: ``producer`` (its Kubo, cluster peer, the producer and the simulated cameras, which
sit next to it), each ``mirrorN`` (its Kubo, cluster peer and mirror), ``catalog``,
``chain`` (anvil and ``camswarm anchor``) and ``front`` (nginx and the gateways). Each
namespace has loopback and one interface, ``eth0``, with an address in a private /24 and
no default route: a host can reach the other hosts of its devnet and nothing else. The
root namespace holds the bridge (``.1``), so tools and tests on the machine reach every
host.

The kernel these machines run has no netem, so a host is not joined to the bridge by a
veth pair but by two persistent TAP devices (``eth0`` in the namespace, ``cs<id>t<n>`` on
the bridge) that :mod:`node.devnet.linkd`, a devnet process in the root namespace, copies
frames between. linkd applies the faults: a cut link, added delay, packet loss
(``camswarm devnet fault``). Everything is named after the devnet's id, so two devnets on
one machine do not collide, and ``down`` removes it all.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.devnet.linkd import MAX_DELAY_MS, LinkSettings
from node.devnet.state import CATALOG_HOST, CHAIN_HOST, FRONT, NetnsPlan
from node.procs import run_checked

HOST_TAP = "eth0"
MTU = 9000  # linkd copies frames in Python: big frames cost 5x less CPU per MB than 1500
SUBNET_BASE = "10.77"  # devnets take 10.77.N.0/24, the first N not on any interface here
FIRST_HOST_OCTET = 10
NETNS_DIR = Path("/run/netns")


class NetnsError(RuntimeError):
    """The namespaces could not be set up or removed; the message names the command."""


@dataclass(frozen=True)
class Fault:
    """What linkd does to one host's link; the default is a healthy link."""

    down: bool = False
    delay_ms: float = 0.0
    loss_pct: float = 0.0

    def __post_init__(self) -> None:
        # linkd's own limits: a fault it would refuse is refused here, before any settings change.
        if not 0.0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY_MS:g} ms, not {self.delay_ms:g}")
        if not 0.0 <= self.loss_pct <= 100.0:
            raise ValueError(f"loss must be between 0 and 100 %, not {self.loss_pct:g}")

    @property
    def healthy(self) -> bool:
        return self == Fault()

    def describe(self) -> str:
        if self.down:
            return "cut off"
        parts = [
            f"delay {self.delay_ms:g} ms" if self.delay_ms else "",
            f"loss {self.loss_pct:g} %" if self.loss_pct else "",
        ]
        return ", ".join(p for p in parts if p) or "healthy"


def hosts(mirrors: Sequence[str], front: bool) -> list[str]:
    """The devnet's hosts in address order."""
    return ["producer", *mirrors, CATALOG_HOST, CHAIN_HOST, *([FRONT] if front else [])]


def host_of(process: str, mirrors: Sequence[str], gateways: Sequence[str]) -> str | None:
    """The host a devnet process runs on; None for linkd itself, which runs in the root namespace."""
    if process == "links":
        return None
    if process == "catalog":
        return CATALOG_HOST
    if process.startswith("camera-") or process == "producer":
        return "producer"
    for prefix in ("kubo-", "cluster-"):
        if process.startswith(prefix):
            return process.removeprefix(prefix)
    if process in mirrors:
        return process
    if process in ("chain", "anchor"):
        return CHAIN_HOST
    if process in gateways or process == "nginx":
        return FRONT
    raise ValueError(f"no host for process {process!r}")


def namespace(plan: NetnsPlan, host: str) -> str:
    return f"cs{plan.id}-{host}"


def bridge(plan: NetnsPlan) -> str:
    return f"cs{plan.id}br"


def root_tap(plan: NetnsPlan, host: str) -> str:
    return f"cs{plan.id}t{list(plan.hosts).index(host)}"


def exec_prefix(plan: NetnsPlan, host: str) -> list[str]:
    """argv prefix running a program inside ``host``'s namespace (``ip`` execs it: same pid)."""
    return [_ip(), "netns", "exec", namespace(plan, host)]


def check_support() -> None:
    """Raise NetnsError naming what is missing for --netns on this machine."""
    if os.geteuid() != 0:
        raise NetnsError("--netns needs root (it creates network namespaces, a bridge and TAP devices)")
    if not Path("/dev/net/tun").exists():
        raise NetnsError("--netns needs /dev/net/tun (TAP devices carry the links)")
    _ip()


def _ip() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if found is None:
        raise NetnsError("--netns needs the `ip` command (Debian package iproute2)")
    return found


def taken_subnets(ip_addr_output: str) -> set[int]:
    """The N of every 10.77.N.0/24 already on an interface, from ``ip -4 -o addr show``."""
    pattern = re.compile(r"\binet (" + re.escape(SUBNET_BASE) + r"\.(\d+))\.\d+/")
    return {int(m.group(2)) for m in pattern.finditer(ip_addr_output)}


def new_plan(host_names: Sequence[str], taken: set[int]) -> NetnsPlan:
    """Addresses for ``host_names`` in the first free 10.77.N.0/24 (N from 1)."""
    free = [n for n in range(1, 255) if n not in taken]
    if not free:
        raise NetnsError(f"no free {SUBNET_BASE}.N.0/24 left for another devnet")
    subnet = f"{SUBNET_BASE}.{free[0]}"
    addresses = {h: f"{subnet}.{FIRST_HOST_OCTET + i}" for i, h in enumerate(host_names)}
    for address in addresses.values():
        ipaddress.IPv4Address(address)  # a bad plan fails here, not inside `ip`
    return NetnsPlan(id=secrets.token_hex(2), subnet=subnet, hosts=addresses)


async def _run(*argv: str) -> str:
    return (await run_checked(argv, error=NetnsError)).strip()


async def current_subnets() -> set[int]:
    return taken_subnets(await _run(_ip(), "-4", "-o", "addr", "show"))


async def create(plan: NetnsPlan) -> None:
    """Create the bridge, the namespaces and both TAP devices of every host (after removing leftovers)."""
    ip = _ip()
    await destroy(plan)
    br = bridge(plan)
    await _run(ip, "link", "add", br, "type", "bridge")
    await _run(ip, "addr", "add", f"{plan.subnet}.1/24", "dev", br)
    await _run(ip, "link", "set", br, "mtu", str(MTU), "up")
    for host, address in plan.hosts.items():
        ns, tap = namespace(plan, host), root_tap(plan, host)
        await _run(ip, "netns", "add", ns)
        await _run(ip, "-n", ns, "link", "set", "lo", "up")
        await _run(ip, "-n", ns, "tuntap", "add", "dev", HOST_TAP, "mode", "tap")
        await _run(ip, "-n", ns, "addr", "add", f"{address}/24", "dev", HOST_TAP)
        await _run(ip, "-n", ns, "link", "set", HOST_TAP, "mtu", str(MTU), "up")
        await _run(ip, "tuntap", "add", "dev", tap, "mode", "tap")
        await _run(ip, "link", "set", tap, "mtu", str(MTU), "master", br, "up")


async def destroy(plan: NetnsPlan) -> list[str]:
    """Remove every namespace, TAP device and the bridge of ``plan`` that exists; returns what went."""
    ip = _ip()
    removed = []
    for host in plan.hosts:
        ns = namespace(plan, host)
        if (NETNS_DIR / ns).exists():
            await _run(ip, "netns", "del", ns)
            removed.append(ns)
        tap = root_tap(plan, host)
        if Path("/sys/class/net", tap).exists():
            await _run(ip, "link", "del", tap)
            removed.append(tap)
    if Path("/sys/class/net", bridge(plan)).exists():
        await _run(ip, "link", "del", bridge(plan))
        removed.append(bridge(plan))
    return removed


def link_settings(plan: NetnsPlan, faults: dict[str, Fault]) -> dict[str, LinkSettings]:
    """linkd's settings for every host's link, with ``faults`` applied."""
    links: dict[str, LinkSettings] = {}
    for host in plan.hosts:
        fault = faults.get(host, Fault())
        links[host] = LinkSettings(
            root_tap=root_tap(plan, host),
            netns=namespace(plan, host),
            ns_tap=HOST_TAP,
            down=fault.down,
            delay_ms=fault.delay_ms,
            loss_pct=fault.loss_pct,
        )
    return links
