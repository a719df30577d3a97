"""The pure parts of the benchmark report: percentiles, the "carries" verdict, rendering."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.analysis import carries, cdf, distribution_ms, drain_seconds, first_drop, most_carried, slope
from bench.common import percentile
from bench.render import SECTIONS, render
from bench.report import PLANS, QUICK_PLANS, command

# --- percentiles and distributions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 50, 5.0, id="one value is every percentile"),
        pytest.param([3.0, 1.0, 2.0], 50, 2.0, id="unsorted input"),
        pytest.param([float(v) for v in range(1, 101)], 50, 51.0, id="nearest rank rounds half up"),
        pytest.param([float(v) for v in range(1, 101)], 99, 99.0, id="p99 of 1..100"),
        pytest.param([float(v) for v in range(1, 11)], 100, 10.0, id="p100 is the max"),
        pytest.param([float(v) for v in range(1, 11)], 0, 1.0, id="p0 is the min"),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_distribution_in_milliseconds() -> None:
    got = distribution_ms([0.1, 0.2, 0.3, 0.4, 1.5])
    assert got == {"count": 5, "p50_ms": 300, "p90_ms": 1500, "p99_ms": 1500, "max_ms": 1500, "mean_ms": 500}


def test_distribution_of_nothing_has_no_figures() -> None:
    got = distribution_ms([])
    assert got["count"] == 0
    assert {got[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")} == {None}


def test_cdf_steps_to_one() -> None:
    assert cdf([3.0, 1.0, 2.0, 2.0]) == ([1.0, 2.0, 2.0, 3.0], [0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)], 2.0, id="a line"),
        pytest.param([(0.0, 4.0), (1.0, 4.0)], 0.0, id="flat"),
        pytest.param([(0.0, 1.0)], 0.0, id="one point"),
        pytest.param([(1.0, 1.0), (1.0, 9.0)], 0.0, id="no spread in time"),
    ],
)
def test_slope(points: list[tuple[float, float]], expected: float) -> None:
    assert slope(points) == pytest.approx(expected)


# --- the "carries" verdict ----------------------------------------------------------------------------


def sawtooth(
    cameras: int, seconds: float, *, interval: float = 1.5, segment: float = 2.0, trend: float = 0.0
) -> list[tuple[float, float]]:
    """The backlog of cameras cutting together: N at each cut, draining linearly within ``segment / 4``."""
    points: list[tuple[float, float]] = []
    t = 0.0
    while t <= seconds:
        phase = (t % segment) / (segment / 4)
        points.append((t, max(0.0, cameras * (1 - phase)) + trend * t))
        t += interval
    return points


@pytest.mark.parametrize(
    ("series", "cameras", "carried", "reason"),
    [
        pytest.param(sawtooth(16, 120), 16, True, "no backlog growth", id="steady sawtooth"),
        pytest.param([(float(t), 0.0) for t in range(60)], 4, True, "no backlog growth", id="always empty"),
        pytest.param(
            sawtooth(16, 120, trend=0.5), 16, False, "grew by", id="0.5 segment/s more than announced"
        ),
        pytest.param(
            [(float(t), 30.0) for t in range(60)], 16, False, "at the end 30 > 16", id="flat but stuck high"
        ),
        pytest.param(
            [(float(t), 100.0 - t) for t in range(100)], 8, True, "no backlog growth", id="draining leftovers"
        ),
        pytest.param([(0.0, 0.0), (1.0, 0.0)], 2, False, "too few", id="too few samples"),
    ],
)
def test_carries(series: list[tuple[float, float]], cameras: int, carried: bool, reason: str) -> None:
    verdict = carries(series, cameras)
    assert verdict.carried is carried
    assert reason in verdict.reason


def test_one_camera_allows_one_segment_of_growth() -> None:
    assert carries([(float(t), 0.0) for t in range(60)], 1).growth_allowed == 1.0
    grows = [(float(t), t / 59 * 1.5) for t in range(60)]  # 0.75 over the last half, ends at 1.5
    assert not carries(grows, 1).carried


@given(
    cameras=st.integers(min_value=1, max_value=64),
    level=st.floats(min_value=0.0, max_value=1.0),
    samples=st.integers(min_value=6, max_value=200),
)
def test_a_constant_backlog_within_one_segment_per_camera_is_carried(
    cameras: int, level: float, samples: int
) -> None:
    assert carries([(float(t), level * cameras) for t in range(samples)], cameras).carried


@given(
    cameras=st.integers(min_value=1, max_value=64),
    excess=st.floats(min_value=1.25, max_value=20.0),
    samples=st.integers(min_value=10, max_value=200),
)
def test_a_backlog_growing_faster_than_allowed_is_not_carried(
    cameras: int, excess: float, samples: int
) -> None:
    # A straight line adding `excess` times the allowance over the last half of the run (the
    # samples of the last half span at least 8/9 of it from 10 samples on).
    allowance = max(1.0, cameras / 2)
    series = [(float(t), 2 * excess * allowance * t / (samples - 1)) for t in range(samples)]
    assert not carries(series, cameras).carried


def _step(cameras: int, carried: bool) -> dict[str, Any]:
    return {"cameras": cameras, "verdict": {"carried": carried}}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([_step(4, True), _step(8, True), _step(12, False)], 8, id="up to the first failure"),
        pytest.param([_step(8, True), _step(4, True)], 8, id="any order"),
        pytest.param([_step(4, True), _step(8, False), _step(12, True)], 4, id="a later pass does not count"),
        pytest.param([_step(4, False)], None, id="none carried"),
        pytest.param([], None, id="no steps"),
    ],
)
def test_most_carried(steps: list[dict[str, Any]], expected: int | None) -> None:
    assert most_carried(steps) == expected


def test_drain_seconds_counts_from_the_heal() -> None:
    series = [(0.0, 1.0), (10.0, 30.0), (20.0, 60.0), (21.0, 40.0), (23.0, 2.0), (24.0, 1.0)]
    assert drain_seconds(series, healed_at=20.0, settled=2) == 3.0
    assert drain_seconds(series, healed_at=20.0, settled=0) is None


def test_first_drop_finds_the_backlog_shrinking_after_the_heal() -> None:
    series = [(0.0, 0.0), (10.0, 3.0), (11.0, 2.0), (20.0, 20.0), (30.0, 25.0), (33.0, 25.0), (34.0, 10.0)]
    assert first_drop(series, after=20.0) == 14.0
    assert first_drop(series[:5], after=20.0) is None


# --- the report -----------------------------------------------------------------------------------


MACHINE = {
    "measured_at": "2026-11-21 10:00 UTC",
    "cpu": "AMD EPYC",
    "cores": 2,
    "ram_gib": 23.5,
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0",
    "load_avg_1m_at_start": 0.5,
    "tools": {"kubo": "0.43.0", "ipfs-cluster": "1.1.6", "ffmpeg": "5.1.9", "wrk": None},
}


def _entry(result: dict[str, Any], command_line: str, **extra: Any) -> dict[str, Any]:
    return {
        "measured_at": "2026-11-21 10:00 UTC",
        "quick": False,
        "machine": MACHINE,
        "command": command_line,
        "result": result,
        **extra,
    }


STEP: dict[str, Any] = {
    "cameras": 16,
    "segment_s": 2,
    "warmup_s": 20,
    "duration_s": 120,
    "sample_interval_s": 1.5,
    "verdict": {
        "carried": True,
        "growth": 0.4,
        "growth_allowed": 8.0,
        "slope_per_s": 0.007,
        "final": 3.0,
        "final_allowed": 16.0,
        "reason": "no backlog growth",
    },
    "outbox_depth_start_end_max": [0, 9, 16],
    "oldest_age_s_max": 1.5,
    "ffmpeg_restarts_during_run": 0,
    "segments_recorded": 2640,
    "segments_announced": 2631,
    "cpu_pct": {
        "producer": 14.1,
        "ffmpeg_all": 10.0,
        "kubo": 11.4,
        "machine": 60.2,
        "producer_over_ffmpeg": 1.41,
    },
    "step_mean_ms": {"add": 179.0, "pin": 17.0, "link": 72.0, "catalog": 230.0, "announce": 13.0},
    "series": [[0.0, 0, 0.0], [1.5, 16, 0.2]],
}
FAILED_STEP = {
    **STEP,
    "cameras": 24,
    "verdict": {**STEP["verdict"], "carried": False, "reason": "backlog grew by 40.0 over the last half"},
}

RESULTS: dict[str, Any] = {
    "format": 1,
    "sections": {
        "latency": _entry(
            {
                "cameras": 2,
                "segment_s": 4,
                "duration_s": 180,
                "segment_mb_mean": 1.04,
                "samples": 86,
                "p50_ms": 125,
                "p99_ms": 280,
                "max_ms": 347,
                "samples_ms": [100.0, 125.0, 280.0],
                "step_mean_ms": {"add": 23.0, "pin": 6.0, "link": 19.0, "catalog": 46.0, "announce": 7.0},
                "kubo_floor": {"samples": 40, "p50_ms": 12, "p99_ms": 65, "samples_ms": [12.0]},
            },
            ".venv/bin/python bench/producer_bench.py latency --cameras 2",
        ),
        "capacity": _entry(
            {"bench": "capacity_sweep", "segment_s": 2, "most_carried": 16, "steps": [STEP, FAILED_STEP]},
            ".venv/bin/python bench/producer_bench.py sweep --steps 16,24",
        ),
        "partition": {
            "measured_at": "2026-11-21 10:00 UTC",
            "quick": False,
            "machine": MACHINE,
            "command": "x",
            "skipped": "needs --netns: not in this checkout",
        },
        "lag": _entry(
            {
                "network": {"kind": "loopback", "mirror_link_delay_ms": 0.0},
                "cameras": 2,
                "segment_s": 4,
                "duration_s": 180,
                "fetch_concurrency": 4,
                "segment_bytes_mean": 1030000,
                "target_met": True,
                "mirrors": {
                    "mirror1": {
                        "announcements": 90,
                        "not_playable": 0,
                        "count": 90,
                        "p50_ms": 55,
                        "p90_ms": 103,
                        "p99_ms": 131,
                        "max_ms": 133,
                        "mean_ms": 60,
                        "target_met": True,
                        "mirror_metric_mean_ms": 60,
                        "mirror_stored": {},
                        "samples_ms": [55.0],
                    },
                    "mirror2": {
                        "announcements": 90,
                        "not_playable": 2,
                        "count": 88,
                        "p50_ms": 57,
                        "p90_ms": 110,
                        "p99_ms": 3050,
                        "max_ms": 3100,
                        "mean_ms": 99,
                        "target_met": False,
                        "mirror_metric_mean_ms": 61,
                        "mirror_stored": {},
                        "samples_ms": [57.0],
                    },
                },
                "kubo_cat_floor": {
                    "via": "mirror2's Kubo, started at mirror1's t0",
                    "errors": 0,
                    "count": 90,
                    "p50_ms": 43,
                    "p90_ms": 80,
                    "p99_ms": 109,
                    "max_ms": 120,
                    "mean_ms": 50,
                    "samples_ms": [43.0],
                },
            },
            ".venv/bin/python bench/mirror_bench.py lag",
            note="Network namespaces were not used: not root.",
        ),
        "catchup": {
            "measured_at": "2026-11-21 10:00 UTC",
            "quick": False,
            "machine": MACHINE,
            "command": "x",
            "error": "ConditionTimeout: timed out after 600s waiting for mirror1",
        },
        "replay": _entry(
            {
                "segments": 43200,
                "repeat": 15,
                "playlist_bytes": 10_000_000,
                "target_ms": 100,
                "compose_ms": {"median": 261.0, "p90": 280.0, "min": 225.0},
                "old_way_ms": {"median": 1557.0, "p90": 1600.0, "min": 1389.0, "playlist_bytes": 10_000_000},
            },
            ".venv/bin/python bench/gateway_bench.py replay",
        ),
    },
}
FIGURES = {"latency": "bench/latency.png", "capacity_cpu": "bench/capacity_cpu.png", "lag": "bench/lag.png"}


@pytest.fixture
def report() -> str:
    """The rendered report with its line breaks as spaces: prose is wrapped at 100 columns."""
    return " ".join(render(copy.deepcopy(RESULTS), FIGURES).split())


def test_prose_is_wrapped_and_tables_are_not() -> None:
    lines = render(copy.deepcopy(RESULTS), FIGURES).splitlines()
    assert max(len(line) for line in lines if not line.startswith(("|", "```", ".venv"))) <= 100
    assert any(len(line) > 100 for line in lines if line.startswith("|"))
    assert lines[-1] != ""
    assert not [a for a, b in itertools.pairwise(lines) if a == b == ""]


def test_report_describes_the_machine(report: str) -> None:
    assert "| CPU | AMD EPYC, 2 cores |" in report
    assert "| RAM | 23.5 GiB |" in report
    assert "kubo 0.43.0, ipfs-cluster 1.1.6, ffmpeg 5.1.9" in report
    assert "wrk" not in report.split("## Summary")[0].split("| tools |")[1].split("| load")[0]


def test_summary_puts_measure_target_and_comparison_side_by_side(report: str) -> None:
    summary = report.split("## Summary")[1].split("## Producer")[0]
    assert (
        "| producer: segment closed -> announcement received, p50 / p99 | 125 ms / 280 ms "
        "| <= 250 ms / <= 1,000 ms | Kubo floor 12 ms / 65 ms | yes |"
    ) in summary
    assert "| producer: cameras carried without backlog growth | 16 (steps run: 16, 24) | >= 16 |" in summary
    assert "mirror2, p50 / p99 (loopback) | 57 ms / 3,050 ms" in summary
    assert "| gateway: replay playlist of 43,200 segments, median | 261 ms | <= 100 ms |" in summary
    assert "the previous way 1,557 ms | **no** |" in summary


def test_sections_without_results_say_so(report: str) -> None:
    assert "Not measured yet (needs --netns: not in this checkout)." in report
    assert "failed: `ConditionTimeout: timed out after 600s waiting for mirror1`" in report
    assert "Not measured yet: `make bench ONLY=http`." in report
    assert "not measured" in report.split("## Summary")[1].split("## Producer")[0]


def test_capacity_table_shows_each_step_and_why_it_failed(report: str) -> None:
    assert "| 16 | yes | 0.4 (<= 8.0) | 3.0 (<= 16) | 16 | 1.5 s | **14.1 %** | 10.0 % | 1.41 |" in report
    assert "| 24 | **no**: backlog grew by 40.0 over the last half |" in report


def test_figures_are_linked_only_when_drawn(report: str) -> None:
    assert "](bench/latency.png)" in report
    assert "](bench/capacity_cpu.png)" in report
    assert "capacity_backlog.png" not in report
    assert "](bench/lag.png)" in report


def test_lag_says_which_network_and_why(report: str) -> None:
    assert "Network: **loopback (no link delay)**. Network namespaces were not used: not root." in report
    assert "| announcements | 90 all playable | 90, **2 not playable** |" in report
    assert "mirror1 +12 ms at p50 and +22 ms at p99; mirror2 +14 ms at p50 and +2,941 ms at p99" in report


def test_quick_sections_carry_a_banner() -> None:
    results = copy.deepcopy(RESULTS)
    assert "QUICK smoke run" not in render(results, {})
    results["sections"]["latency"]["quick"] = True
    text = render(results, {})
    assert "> **QUICK smoke run** for `latency`" in text
    assert "**QUICK smoke run** (short durations)" in text


def test_an_empty_results_file_renders_every_section_as_not_measured() -> None:
    text = render({"format": 1, "sections": {}}, {})
    for section in SECTIONS:
        assert f"`make bench ONLY={section}`." in text


def test_plans_cover_every_section_and_rerun_commands_repeat_the_arguments() -> None:
    assert set(PLANS) == set(QUICK_PLANS) == set(SECTIONS)
    assert command("capacity", QUICK_PLANS["capacity"]) == (
        ".venv/bin/python bench/producer_bench.py sweep --steps 2,4 --segment 2 --duration 30 "
        "--warmup 10 --interval 1.5 --keep-going"
    )
    assert command("catchup", PLANS["catchup"]).endswith(
        "catchup --cameras 2 --segment 2 --offline 600 --whole-node"
    )


def test_partition_reports_peak_resume_drain_and_losses() -> None:
    results = copy.deepcopy(RESULTS)
    results["sections"]["partition"] = _entry(
        {"cameras": 2, "segment_s": 2, "partition_s": 20, "sample_interval_s": 1.0, "cut_at_s": 10.0,
         "healed_at_s": 30.0, "peak_backlog": 32, "recorded_during_cut": 20, "not_announced_at_end": 0,
         "resumed_s": 13.2, "drain_s": 18.1, "series": [[0.0, 0, 0.0]]},
        ".venv/bin/python bench/producer_bench.py partition",
    )  # fmt: skip
    text = " ".join(render(results, {"partition": "bench/partition.png"}).split())
    assert (
        "| producer: backlog through a 20 s partition "
        "| peak 32, drained 18.1 s after the heal, 0 not announced "
        "| nothing lost; drained within 20 s | 20 segments recorded during the cut | yes |"
    ) in text
    assert "| announcing again (the backlog first shrinks) after the heal | 13.2 s |" in text
    assert "](bench/partition.png)" in text


def test_a_sweep_that_carried_every_step_reports_a_floor_not_a_limit() -> None:
    results = copy.deepcopy(RESULTS)
    capacity = results["sections"]["capacity"]["result"]
    capacity.update(steps=[STEP], steps_planned=[16], most_carried=16)
    text = " ".join(render(results, {}).split())
    assert "| producer: cameras carried without backlog growth | 16 or more (every step carried) " in text


def test_a_run_without_samples_renders_dashes_and_misses_its_target() -> None:
    results = copy.deepcopy(RESULTS)
    latency = results["sections"]["latency"]["result"]
    latency.update(samples=0, p50_ms=None, p99_ms=None, max_ms=None, samples_ms=[])
    latency["step_mean_ms"]["catalog"] = None
    text = " ".join(render(results, {}).split())
    assert (
        "announcement received, p50 / p99 | — / — | <= 250 ms / <= 1,000 ms "
        "| Kubo floor 12 ms / 65 ms | **no** |" in text
    )
    assert "catalog — (includes" in text
