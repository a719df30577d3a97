"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp


def log(text: str) -> None:
    """Progress of a benchmark, on stderr (stdout carries its one JSON line)."""
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def fetch_metrics(url: str) -> dict[str, float]:
    """A Prometheus text page as ``{'name{labels}': value}``."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def fetch_health(url: str) -> dict[str, Any]:
    """A ``/healthz`` answer (JSON); {} when it is not 200. At most 5 s."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        result: dict[str, Any] = await response.json() if response.status == 200 else {}
        return result


def run_chosen(
    parser: argparse.ArgumentParser,
    runners: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]],
) -> int:
    """Parse the command line, run the chosen benchmark and print its result as one JSON line."""
    args = parser.parse_args()
    print(json.dumps(asyncio.run(runners[args.bench](args))))
    return 0
