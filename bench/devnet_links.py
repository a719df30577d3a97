"""The devnet's network namespaces and link faults, as far as this checkout has them.

``node/devnet`` grows them (``up(..., netns_hosts=True)`` and ``fault(directory, host, Fault)``)
while these benchmarks are written, so they are looked up at run time, not imported: a
benchmark asked for ``--netns`` on a checkout without them stops with a clear message, and
the report driver runs on loopback instead (and says so) or leaves a section unmeasured.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from node.devnet import network

UP_FLAGS = ("netns_hosts", "netns")  # the keyword of network.up, newest first


class NetnsUnavailable(RuntimeError):
    """This checkout or machine cannot run a devnet in network namespaces; the message says why."""


def _up_flag() -> str | None:
    params = inspect.signature(network.up).parameters
    return next((flag for flag in UP_FLAGS if flag in params), None)


def unavailable() -> str | None:
    """Why ``--netns`` cannot run here, or None when it can."""
    if _up_flag() is None:
        return "node.devnet.network.up has no netns option in this checkout"
    if not callable(getattr(network, "fault", None)):
        return "node.devnet.network has no fault() in this checkout"
    try:
        from node.devnet import netns  # type: ignore[attr-defined,unused-ignore]

        netns.check_support()
    except ImportError:
        return "node.devnet.netns is missing in this checkout"
    except RuntimeError as exc:  # NetnsError: not root, no /dev/net/tun
        return str(exc)
    return None


def up_kwargs(netns: bool) -> dict[str, Any]:
    """The keyword arguments that make ``network.up`` use (or not use) network namespaces."""
    if not netns:
        return {}
    reason = unavailable()
    if reason is not None:
        raise NetnsUnavailable(f"--netns: {reason}")
    flag = _up_flag()
    assert flag is not None
    return {flag: True}


async def set_link(directory: Path, host: str, *, down: bool = False, delay_ms: float = 0.0) -> None:
    """Cut, delay or heal (neither) ``host``'s link; returns once the devnet applied it."""
    fault: Any = getattr(network, "fault", None)
    if fault is None:
        raise NetnsUnavailable("node.devnet.network has no fault() in this checkout")
    params = inspect.signature(fault).parameters
    if "new" in params:  # fault(directory, host, netns.Fault(...))
        from node.devnet import netns  # type: ignore[attr-defined,unused-ignore]

        await fault(directory, host, netns.Fault(down=down, delay_ms=delay_ms))
    else:  # fault(directory, host, down=..., delay_ms=...)
        await fault(directory, host, down=down, delay_ms=delay_ms)
