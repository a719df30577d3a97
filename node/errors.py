"""Exceptions raised by camswarm's daemon clients.

Callers decide retry policy from the type: ``DaemonUnreachable`` and
``DaemonTimeout`` are transient, ``DaemonHTTPError`` carries the daemon's own
message, ``BadCID`` is the caller's fault and never worth retrying.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence


class DaemonError(Exception):
    """Base class: something went wrong talking to a daemon."""

    def __init__(self, service: str, url: str, detail: str) -> None:
        super().__init__(f"{service} at {url}: {detail}")
        self.service = service
        self.url = url
        self.detail = detail


class DaemonUnreachable(DaemonError):
    """Nothing answered (connection refused, reset, DNS)."""


class DaemonTimeout(DaemonError):
    """The daemon did not answer within the deadline."""


class DaemonHTTPError(DaemonError):
    """The daemon answered with an error status; ``message`` is its own text."""

    def __init__(self, service: str, url: str, status: int, message: str) -> None:
        super().__init__(service, url, f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class BadCID(ValueError):
    """A string that is not a valid CID (checked before any request is sent)."""


async def each_reached(calls: Sequence[Awaitable[object]]) -> list[bool]:
    """Run daemon calls together; which of them succeeded. A ``DaemonError`` counts as a miss
    (the daemon or its peer is unreachable now); any other exception is a bug and is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, DaemonError):
            raise result
    return [not isinstance(result, BaseException) for result in results]
