"""Run the benchmarks and regenerate docs/benchmarks.md with its figures (`make bench`).

    .venv/bin/python bench/report.py                      # everything, full durations (about 45 min)
    .venv/bin/python bench/report.py --quick              # smoke run, short durations (about 7 min)
    .venv/bin/python bench/report.py --only lag,capacity  # rerun some sections, keep the others
    .venv/bin/python bench/report.py --render-only        # redraw figures and text from the results

Sections, in the order they run: replay, latency, capacity, lag, catchup, http, partition
(see SECTIONS in bench/render.py for the order of the document). Each runs the benchmark
function of bench/producer_bench.py, bench/mirror_bench.py or bench/gateway_bench.py with the
arguments of its plan (PLANS below, or QUICK_PLANS), in an event loop of its own, one devnet
at a time.

Written next to the document (``--doc``, default docs/benchmarks.md), in ``bench/`` beside it:
``results.json`` (each section's result with when, where and how it was measured; kept across
runs, so ``--only`` replaces just its sections) and one PNG per figure. Both are meant to be
committed with the document: the text can be regenerated from them with ``--render-only``.

lag runs in network namespaces with 20 ms on each mirror's link when this machine can
(node/devnet/netns.py: root, /dev/net/tun, iproute2), else on loopback, and the report says which
(``--lag-network`` forces one). partition needs network namespaces: without them the section
stays "not measured yet".

A section that fails is recorded as failed (its devnet is removed) and the run goes on; the
exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shlex
import sys
import traceback
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import gateway_bench, machine, mirror_bench, producer_bench
from bench.common import log
from bench.render import SECTIONS, render
from node.devnet import netns
from node.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
RUN_ORDER = ("replay", "latency", "capacity", "lag", "catchup", "http", "partition")
LAG_DELAY_MS = 20.0

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


def ns(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**values)


# section -> (script, subcommand, runner); the script and subcommand make the "rerun" command.
RUNNERS: dict[str, tuple[str, str, Runner]] = {
    "latency": ("producer_bench.py", "latency", producer_bench.run_latency),
    "capacity": ("producer_bench.py", "sweep", producer_bench.run_sweep),
    "partition": ("producer_bench.py", "partition", producer_bench.run_partition),
    "lag": ("mirror_bench.py", "lag", mirror_bench.run_lag),
    "catchup": ("mirror_bench.py", "catchup", mirror_bench.run_catchup),
    "http": ("gateway_bench.py", "http", gateway_bench.run_http),
    "replay": ("gateway_bench.py", "replay", gateway_bench.run_replay),
}

PLANS: dict[str, argparse.Namespace] = {
    "latency": ns(cameras=2, segment=4, duration=180, baseline_samples=40),
    "capacity": ns(
        steps=[4, 8, 12, 16, 24, 32, 48], segment=2, duration=120, warmup=20, interval=1.5, keep_going=False
    ),
    "partition": ns(cameras=2, segment=2, before=30, partition=120, after=180, settle=15, interval=1.0),
    "lag": ns(cameras=2, segment=4, duration=180, netns=False, link_delay_ms=LAG_DELAY_MS),
    "catchup": ns(cameras=2, segment=2, offline=600, whole_node=True),
    "http": ns(duration=10, connections=50, rounds=3),
    "replay": ns(segments=43_200, repeat=15),
}
QUICK_PLANS: dict[str, argparse.Namespace] = {
    "latency": ns(cameras=2, segment=4, duration=30, baseline_samples=10),
    "capacity": ns(steps=[2, 4], segment=2, duration=30, warmup=10, interval=1.5, keep_going=True),
    "partition": ns(cameras=2, segment=2, before=10, partition=20, after=60, settle=5, interval=1.0),
    "lag": ns(cameras=2, segment=4, duration=30, netns=False, link_delay_ms=LAG_DELAY_MS),
    "catchup": ns(cameras=2, segment=2, offline=30, whole_node=True),
    "http": ns(duration=3, connections=50, rounds=1),
    "replay": ns(segments=43_200, repeat=3),
}
DEVNET_S = 25  # starting and removing one devnet, roughly


def estimate_s(section: str, plan: argparse.Namespace) -> float:
    """Rough wall time of a section under a plan, for the progress log."""
    if section == "latency":
        return float(DEVNET_S + plan.duration + plan.baseline_samples * 0.5)
    if section == "capacity":
        return float(len(plan.steps) * (DEVNET_S + plan.warmup + plan.duration))
    if section == "partition":
        return float(DEVNET_S + plan.before + plan.partition + 30 + plan.settle)
    if section == "lag":
        return float(DEVNET_S + plan.duration + 10)
    if section == "catchup":
        return float(DEVNET_S + plan.offline + 30)
    if section == "http":
        return float(DEVNET_S + plan.rounds * 5 * (plan.duration + 1))
    return float(plan.repeat * 2.0)


def command(section: str, plan: argparse.Namespace) -> str:
    """The direct command that reruns one section with the same arguments."""
    script, sub, _ = RUNNERS[section]
    argv = [".venv/bin/python", f"bench/{script}", sub]
    for key, value in vars(plan).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(argv)


def netns_unavailable() -> str | None:
    """Why a devnet cannot run in network namespaces on this machine, or None when it can."""
    try:
        netns.check_support()
    except netns.NetnsError as exc:
        return str(exc)
    return None


def run_section(section: str, plan: argparse.Namespace, quick: bool, lag_network: str) -> dict[str, Any]:
    """Measure one section; the results entry, with its result or why there is none."""
    entry: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "machine": machine.describe(),
    }
    plan = argparse.Namespace(**vars(plan))
    if section == "lag":
        reason = netns_unavailable()
        if lag_network == "netns" or (lag_network == "auto" and reason is None):
            plan.netns = True
        elif reason is not None:
            entry["note"] = f"Network namespaces were not used: {reason}."
    entry["command"] = command(section, plan)
    if section == "partition" and (reason := netns_unavailable()) is not None:
        entry["skipped"] = f"needs --netns: {reason}"
        log(f"report: {section}: skipped ({entry['skipped']})")
        return entry
    log(f"report: {section}: {entry['command']}")
    try:
        entry["result"] = asyncio.run(RUNNERS[section][2](plan))
    except Exception as exc:  # recorded in the report as a failed section; the run goes on
        entry["error"] = "".join(traceback.format_exception_only(exc)).strip()
        log(f"report: {section} failed:\n{traceback.format_exc()}")
    return entry


def draw(sections: dict[str, dict[str, Any]], figures_dir: Path, doc_dir: Path) -> dict[str, str]:
    """Draw every figure the results allow; figure key -> path relative to the document."""
    from bench import plots  # matplotlib: `make bench-deps`

    jobs: list[tuple[str, str, Callable[[dict[str, Any], Path], Path | None]]] = [
        ("latency", "latency", plots.latency),
        ("capacity", "capacity_cpu", plots.capacity_cpu),
        ("capacity", "capacity_backlog", plots.capacity_backlog),
        ("lag", "lag", plots.mirror_lag),
        ("partition", "partition", plots.partition_backlog),
    ]
    figures: dict[str, str] = {}
    for section, key, plot in jobs:
        path = figures_dir / f"{key}.png"
        result = (sections.get(section) or {}).get("result")
        drawn = plot(result, path) if result else None
        if drawn is None:
            path.unlink(missing_ok=True)  # no stale figure beside a section without a result
        else:
            figures[key] = drawn.relative_to(doc_dir).as_posix()
    return figures


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": 1, "sections": {}}
    results: dict[str, Any] = json.loads(path.read_text())
    return results


def without_nan(value: Any) -> Any:
    """NaN (a figure with no samples) as None: JSON has no NaN, and the report shows a dash."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value


def save(path: Path, results: dict[str, Any]) -> None:
    text = json.dumps(without_nan(results), indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, text)


def _sections(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in RUNNERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown)}; one of {', '.join(SECTIONS)}"
        )
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short durations: a smoke run")
    parser.add_argument(
        "--only", type=_sections, action="append", default=[], metavar="SECTION[,SECTION]",
        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}",
    )  # fmt: skip
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="the Markdown to write")
    parser.add_argument("--render-only", action="store_true", help="measure nothing; redraw from the results")
    parser.add_argument(
        "--lag-network", choices=("auto", "netns", "loopback"), default="auto",
        help="where lag runs: network namespaces with 20 ms mirror links when possible (auto)",
    )  # fmt: skip
    args = parser.parse_args()
    doc = args.doc.resolve()
    figures_dir = doc.parent / "bench"
    results_path = figures_dir / "results.json"
    results = load(results_path)
    sections: dict[str, dict[str, Any]] = results.setdefault("sections", {})
    chosen = {s for group in args.only for s in group} or set(RUN_ORDER)
    plans = QUICK_PLANS if args.quick else PLANS
    failed = []
    if not args.render_only:
        todo = [s for s in RUN_ORDER if s in chosen]
        total = sum(estimate_s(s, plans[s]) for s in todo)
        log(f"report: running {', '.join(todo)}: about {total / 60:.0f} min")
        for section in todo:
            entry = run_section(section, plans[section], args.quick, args.lag_network)
            sections[section] = entry
            save(results_path, results)  # a later failure or ^C keeps what is measured
            if "error" in entry:
                failed.append(section)
    figures = draw(sections, figures_dir, doc.parent)
    doc.write_text(render(results, figures))
    log(f"report: wrote {doc} from {results_path}; figures: {', '.join(sorted(figures.values())) or 'none'}")
    if failed:
        log(f"report: failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
