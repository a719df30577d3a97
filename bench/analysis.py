"""Pure computations over benchmark samples: percentiles, CDFs, trends, the "carries" verdict.

No I/O: the benchmark scripts collect samples, these functions judge them, and the unit tests
(tests/unit/test_bench_report.py) pin them down.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import percentile

Point = tuple[float, float]  # (seconds since the measurement began, value)


def ms(seconds: float) -> float | None:
    """Seconds as whole milliseconds; None for NaN (a JSON null, "no samples")."""
    return None if math.isnan(seconds) else round(seconds * 1000)


def distribution_ms(samples_s: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p90, p99, max and mean of samples in seconds, as milliseconds."""
    values = list(samples_s)
    return {
        "count": len(values),
        "p50_ms": ms(percentile(values, 50)),
        "p90_ms": ms(percentile(values, 90)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(values, default=float("nan"))),
        "mean_ms": ms(statistics.fmean(values)) if values else None,
    }


def samples_ms(samples_s: Sequence[float]) -> list[float]:
    """Raw samples in seconds as sorted milliseconds (0.1 ms), as results keep them for the figures."""
    return sorted(round(s * 1000, 1) for s in samples_s)


def cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF as step points: sorted values and the fraction at or below each."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def slope(points: Sequence[Point]) -> float:
    """Least-squares slope of value over time (units per second); 0 for fewer than two times."""
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    mean_t = statistics.fmean(ts)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t in ts)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


# --- cameras carried --------------------------------------------------------------------------------

MIN_SAMPLES = 6  # below this a step is not judged at all


@dataclass(frozen=True)
class Verdict:
    """Whether a producer carried ``cameras`` over a run, and the figures it was judged on."""

    carried: bool
    growth: float  # backlog added over the last half, by the least-squares line (segments)
    growth_allowed: float
    slope_per_s: float
    final: float  # median backlog over the last tenth of the run (segments)
    final_allowed: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("growth", "growth_allowed", "slope_per_s", "final", "final_allowed"):
            values[key] = round(values[key], 3)
        return values


def carries(series: Sequence[Point], cameras: int) -> Verdict:
    """Judge an outbox backlog series (segments not yet announced) taken after a warm-up.

    A producer carries its cameras when the backlog does not grow:

    - over the last half of the run the least-squares line adds at most ``max(1, cameras / 2)``
      segments. All cameras cut their segments at the same moment (they pull one shared
      stream), so the backlog saws between 0 and about one segment per camera; half of that
      tooth is the noise a fitted line still shows, while a producer short by a few per cent of
      its recording rate adds several teeth over a minute or two;
    - and the backlog at the end (the median over the last tenth of the samples, at least 3)
      is at most one segment per camera: the segments just cut and still in their pipelines.

    The first half is left out: it holds the warm-up's leftovers draining.
    """
    growth_allowed = max(1.0, cameras / 2)
    final_allowed = float(cameras)
    points = sorted(series)
    if len(points) < MIN_SAMPLES:
        return Verdict(False, 0.0, growth_allowed, 0.0, 0.0, final_allowed, f"{len(points)} samples: too few")
    start, end = points[0][0], points[-1][0]
    half = [p for p in points if p[0] >= start + (end - start) / 2]
    rate = slope(half)
    growth = rate * (half[-1][0] - half[0][0])
    tail = points[-max(3, len(points) // 10) :]
    final = statistics.median(v for _, v in tail)
    reasons = []
    if growth > growth_allowed:
        reasons.append(f"backlog grew by {growth:.1f} over the last half (allowed {growth_allowed:g})")
    if final > final_allowed:
        reasons.append(f"backlog at the end {final:g} > {final_allowed:g}")
    return Verdict(
        carried=not reasons,
        growth=growth,
        growth_allowed=growth_allowed,
        slope_per_s=rate,
        final=final,
        final_allowed=final_allowed,
        reason="; ".join(reasons) or "no backlog growth",
    )


def most_carried(steps: Sequence[dict[str, Any]]) -> int | None:
    """The largest camera count carried with every smaller step carried too; None if the first fails."""
    best = None
    for step in sorted(steps, key=lambda s: int(s["cameras"])):
        if not step["verdict"]["carried"]:
            break
        best = int(step["cameras"])
    return best


# --- backlog around a partition ------------------------------------------------------------------


def drain_seconds(series: Sequence[Point], healed_at: float, settled: float) -> float | None:
    """Seconds from ``healed_at`` until the backlog is first back at or below ``settled``; None if never."""
    for t, value in sorted(series):
        if t >= healed_at and value <= settled:
            return round(t - healed_at, 1)
    return None


def first_drop(series: Sequence[Point], after: float) -> float | None:
    """Seconds from ``after`` to the first sample lower than the one before it (work resumed)."""
    points = sorted(series)
    for (_, before), (t, value) in itertools.pairwise(points):
        if t >= after and value < before:
            return round(t - after, 1)
    return None
