"""The report's PNG figures, drawn with matplotlib from a section's result (bench/report.py).

Each function takes the result a benchmark returned and the path to write, and draws only
what was measured: a section without samples gets no figure. matplotlib comes with the
``bench`` extra (``make bench-deps``); it is imported here only, so rendering the Markdown
(bench/render.py) and its tests do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bench.analysis import cdf
from bench.common import percentile
from bench.render import network_label

DPI = 100
SIZE = (9.0, 4.5)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _cdf_with_marks(ax: Axes, samples_ms: Sequence[float], label: str, color: str, dashed: bool) -> None:
    """One CDF line, its p50 (circle) and p99 (diamond) marked on it and given in the legend."""
    if not samples_ms:
        return
    xs, ys = cdf(samples_ms)
    p50, p99 = percentile(list(samples_ms), 50), percentile(list(samples_ms), 99)
    style = "--" if dashed else "-"
    ax.step(
        xs, ys, where="post", linestyle=style, color=color,
        label=f"{label}: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms (n={len(xs)})",
    )  # fmt: skip
    ax.plot([p50], [0.5], "o", color=color, markersize=7)
    ax.plot([p99], [0.99], "D", color=color, markersize=6)


def _plain(value: float, _: object) -> str:
    """Ticks 1, 2, 3, 5 of each decade labelled in plain numbers (20, 50, 100), the others not."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa, 6) in (1.0, 2.0, 3.0, 5.0) else ""


def _ms_log_axis(ax: Axes) -> None:
    """A log axis labelled in plain milliseconds rather than powers of ten."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(FuncFormatter(_plain))
    ax.tick_params(axis="x", which="both", labelsize=8)


def latency(result: dict[str, Any], path: Path) -> Path | None:
    """CDF of segment closed -> announcement received, beside the Kubo floor."""
    ours = result.get("samples_ms") or []
    floor = (result.get("kubo_floor") or {}).get("samples_ms") or []
    if not ours:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    _cdf_with_marks(ax, ours, "camswarm producer", "tab:blue", dashed=False)
    _cdf_with_marks(ax, floor, "Kubo floor (add + pubsub pub only)", "tab:gray", dashed=True)
    _ms_log_axis(ax)
    ax.set_xlabel("segment closed -> announcement received at the mirror's Kubo (ms, log scale)")
    ax.set_ylabel("fraction of segments (circle: p50, diamond: p99)")
    ax.set_ylim(0, 1.05)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Producer latency: {result['cameras']} cameras, {result['segment_s']} s segments")
    return _save(fig, path)


def capacity_cpu(result: dict[str, Any], path: Path) -> Path | None:
    """CPU per sweep step: the producer beside its ffmpeg remuxers (and Kubo)."""
    steps = result.get("steps") or []
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    width = 0.27
    xs = range(len(steps))
    series = (
        ("producer", "producer (Python)", "tab:blue"),
        ("ffmpeg_all", "its ffmpeg remuxers", "tab:orange"),
        ("kubo", "producer's Kubo", "tab:gray"),
    )
    for k, (key, label, color) in enumerate(series):
        values = [float(s["cpu_pct"][key] or 0.0) for s in steps]
        bars = ax.bar([x + (k - 1) * width for x in xs], values, width, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(
        list(xs),
        [f"{s['cameras']}\n{'carried' if s['verdict']['carried'] else 'NOT carried'}" for s in steps],
    )
    ax.set_xlabel("cameras on one producer")
    ax.set_ylabel("CPU, % of one core")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"Producer CPU by camera count ({result['segment_s']} s segments)")
    return _save(fig, path)


def capacity_backlog(result: dict[str, Any], path: Path) -> Path | None:
    """Outbox backlog over time, one line per sweep step."""
    steps = result.get("steps") or []
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    for step in steps:
        ts = [p[0] for p in step["series"]]
        depth = [p[1] for p in step["series"]]
        mark = "carried" if step["verdict"]["carried"] else "NOT carried"
        ax.plot(ts, depth, label=f"{step['cameras']} cameras: {mark}", linewidth=1.2)
    ax.set_xlabel("seconds after the warm-up")
    ax.set_ylabel("outbox backlog (segments not yet announced)")
    ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Backlog over time at each step (no growth = carried)")
    return _save(fig, path)


def mirror_lag(result: dict[str, Any], path: Path) -> Path | None:
    """Announcement -> playable at each mirror: histogram and CDF, p50/p99 marked."""
    mirrors = result.get("mirrors") or {}
    floor = (result.get("kubo_cat_floor") or {}).get("samples_ms") or []
    if not any(m.get("samples_ms") for m in mirrors.values()):
        return None
    colors = ["tab:blue", "tab:green", "tab:purple", "tab:red"]
    fig, (hist, line) = plt.subplots(1, 2, figsize=(12.0, 4.5))
    everything = [v for m in mirrors.values() for v in m.get("samples_ms") or []] + list(floor)
    low, high = max(1.0, min(everything)), max(everything)
    bins = [low * (high / low) ** (i / 30) for i in range(31)] if high > low else 10
    for color, (name, mirror) in zip(colors, sorted(mirrors.items()), strict=False):
        samples = mirror.get("samples_ms") or []
        hist.hist(samples, bins=bins, histtype="step", color=color, label=name, linewidth=1.4)
        _cdf_with_marks(line, samples, name, color, dashed=False)
    if floor:
        hist.hist(floor, bins=bins, histtype="step", color="tab:gray", linestyle="--", label="cat floor")
        _cdf_with_marks(line, floor, "cat floor (bitswap only)", "tab:gray", dashed=True)
    for ax in (hist, line):
        _ms_log_axis(ax)
        ax.set_xlabel("announcement -> playable (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    hist.set_ylabel("segments")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.legend(loc="upper right")
    line.set_ylabel("fraction of segments (circle: p50, diamond: p99)")
    line.set_ylim(0, 1.05)
    line.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Mirror lag on {network_label(result)}")
    return _save(fig, path)


def partition_backlog(result: dict[str, Any], path: Path) -> Path | None:
    """Backlog sampled every second, the partition shaded."""
    series = result.get("series") or []
    if not series:
        return None
    fig, ax = plt.subplots(figsize=SIZE)
    ax.axvspan(
        result["cut_at_s"], result["healed_at_s"], color="tab:red", alpha=0.12, label="producer cut off"
    )
    ax.plot([p[0] for p in series], [p[1] for p in series], color="tab:blue", label="outbox backlog")
    ax.axhline(
        result["cameras"], color="tab:gray", linestyle="--", linewidth=1, label="one segment per camera"
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("segments not yet announced")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(
        f"Backlog through a {result['partition_s']} s partition of the producer "
        f"({result['cameras']} cameras, {result['segment_s']} s segments)"
    )
    return _save(fig, path)
