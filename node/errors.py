"""Exceptions raised by camswarm's daemon clients.

Callers decide retry policy from the type: ``DaemonUnreachable`` and
``DaemonTimeout`` are transient, ``DaemonHTTPError`` carries the daemon's own
message, ``BadCID`` is the caller's fault and never worth retrying.
"""

from __future__ import annotations


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
