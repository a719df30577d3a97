"""Structured logging: one line per event, ``key=value`` pairs, rate-limited repeats.

Usage: ``log.info("segment_added", extra=kv(camera="f1/d1", seq=12))`` prints
``ts=... level=info logger=... event=segment_added camera=f1/d1 seq=12``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

_FIELDS = "camswarm_fields"


def kv(**fields: Any) -> dict[str, Any]:
    """Wrap fields for ``extra=`` so the formatter prints them as key=value."""
    return {_FIELDS: fields}


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_kv(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={_quote(value)}" for key, value in fields.items())


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        head.update(getattr(record, _FIELDS, {}))
        line = format_kv(head)
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimiter:
    """Allow an event at most once per ``interval`` seconds per key; count what was held back."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """Return (should_log, how many were suppressed since the last logged one)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)
