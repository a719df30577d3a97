"""docs/benchmarks.md from the results file: data in, Markdown out, no I/O.

``render(results, figures)`` takes what bench/report.py keeps in ``results.json`` (one entry
per section: when and where it was measured, how to rerun it, and the result the benchmark
returned, or why there is none) and the figures drawn from it (figure key -> path relative to
the document), and returns the whole document. Every number in it comes from the results;
a section without a result says so instead.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Targets, shared by the summary and the sections.
LATENCY_P50_MS, LATENCY_P99_MS = 250, 1000
CAMERAS_TARGET = 16
LAG_P50_MS, LAG_P99_MS = 500, 2000
CATCHUP_RATE = 20.0
LIVE_OVER_STATIC, SIGNED_OVER_PLAIN = 0.8, 0.9
REPLAY_MS = 100

MACHINE_KEYS = ("cpu", "cores", "ram_gib", "os", "kernel")


# --- formatting -------------------------------------------------------------------------------------


def num(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators; an em dash for none."""
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:,.{digits}f}"


def ms(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{num(value, digits)} ms"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def network_label(result: dict[str, Any]) -> str:
    network = result.get("network") or {"kind": "loopback"}
    if network.get("kind") == "netns":
        return f"network namespaces, {network.get('mirror_link_delay_ms', 0):g} ms on each mirror's link"
    return "loopback (no link delay)"


@dataclass
class Part:
    """What one section contributes: rows of the summary table and its own lines."""

    summary: list[list[str]] = field(default_factory=list)
    body: list[str] = field(default_factory=list)


def _figure(figures: dict[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({figures[key]})", ""] if key in figures else []


def _provenance(name: str, entry: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    mode = ", **QUICK smoke run** (short durations)" if entry.get("quick") else ""
    lines = [f"_Measured {entry.get('measured_at', '?')}{mode}. Rerun: `make bench ONLY={name}`, or_", ""]
    lines += ["```sh", entry.get("command", ""), "```", ""]
    other = entry.get("machine") or {}
    if other and any(other.get(k) != machine.get(k) for k in MACHINE_KEYS):
        described = ", ".join(f"{k} {other.get(k)}" for k in MACHINE_KEYS)
        lines += [f"_On another machine than the one above: {described}._", ""]
    return lines


def _missing(name: str, entry: dict[str, Any] | None, what: str) -> Part:
    if entry is None:
        text = f"Not measured yet: `make bench ONLY={name}`."
    elif "skipped" in entry:
        text = f"Not measured yet ({entry['skipped']})."
    else:
        first = str(entry.get("error", "no result")).strip().splitlines() or ["no result"]
        text = f"The last run ({entry.get('measured_at', '?')}) failed: `{first[-1]}`. Nothing is reported."
    return Part(summary=[[what, "not measured", "", "", "—"]], body=[text, ""])


# --- producer -------------------------------------------------------------------------------------


def latency(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    floor = r.get("kubo_floor") or {}
    p50, p99 = r["p50_ms"], r["p99_ms"]  # None: no samples
    ok = p50 is not None and p99 is not None and p50 <= LATENCY_P50_MS and p99 <= LATENCY_P99_MS
    steps = r.get("step_mean_ms") or {}
    part = Part()
    part.summary.append(
        [
            "producer: segment closed -> announcement received, p50 / p99",
            f"{ms(r['p50_ms'])} / {ms(r['p99_ms'])}",
            f"<= {LATENCY_P50_MS} ms / <= {num(LATENCY_P99_MS)} ms",
            f"Kubo floor {ms(floor.get('p50_ms'))} / {ms(floor.get('p99_ms'))}",
            met(ok),
        ]
    )
    part.body += [
        "Closed: ffmpeg lists the segment in its playlist (seen by the benchmark through inotify on "
        "the producer's session directories). Received: the signed announcement arrives at the "
        f"mirror's Kubo (`pubsub/sub`). {r['cameras']} cameras, {r['segment_s']} s segments "
        f"({r['segment_mb_mean']} MB mean), {r['duration_s']} s, {r['samples']} segments.",
        "",
    ]
    part.body += table(
        [
            "measure",
            "camswarm producer",
            "target",
            "comparison: Kubo floor (`ipfs add` + `pubsub pub` of the same files, nothing else; "
            f"{floor.get('samples', 0)} files)",
        ],
        [
            ["p50", f"**{ms(r['p50_ms'])}**", f"<= {LATENCY_P50_MS} ms", ms(floor.get("p50_ms"))],
            ["p99", f"**{ms(r['p99_ms'])}**", f"<= {num(LATENCY_P99_MS)} ms", ms(floor.get("p99_ms"))],
            ["max", ms(r["max_ms"]), "", ""],
        ],
    )
    part.body += [
        "",
        "Where the time goes (mean per step, same run): "
        f"add {ms(steps.get('add'))}, cluster pin {ms(steps.get('pin'))}, "
        f"MFS link {ms(steps.get('link'))}, catalog {ms(steps.get('catalog'))} (includes one ffprobe "
        "per session and the camera-state write), "
        f"announce {ms(steps.get('announce'))}; plus hashing and journaling (an fsync).",
        "",
    ]
    part.body += _figure(figures, "latency", "CDF of producer latency beside the Kubo floor")
    return part


def capacity(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    steps = r.get("steps") or []
    best = r.get("most_carried")
    first = steps[0] if steps else {}
    at_best = next((s for s in steps if s["cameras"] == best), None)
    part = Part()
    ran = ", ".join(str(s["cameras"]) for s in steps) or "none"
    # Every planned step carried: the sweep found a floor, not the limit.
    planned = r.get("steps_planned") or [s["cameras"] for s in steps]
    open_ended = best is not None and best >= max(planned)
    shown = (
        f"{best} or more (every step carried)" if open_ended else str(best if best is not None else "none")
    )
    comparison = (
        f"at {best}: producer {pct(at_best['cpu_pct']['producer'])}, "
        f"its ffmpeg {pct(at_best['cpu_pct']['ffmpeg_all'])} of one core"
        if at_best
        else ""
    )
    part.summary.append(
        [
            "producer: cameras carried without backlog growth",
            f"{shown} (steps run: {ran})",
            f">= {CAMERAS_TARGET}",
            comparison,
            met(best is not None and best >= CAMERAS_TARGET),
        ]
    )
    part.body += [
        f"Each step: N cameras at 2 Mbit/s with {r['segment_s']} s segments through one producer, on a "
        "fresh devnet (empty catalog and outbox; one mirror fetching everything), "
        f"{first.get('warmup_s', '?')} s of warm-up, then {first.get('duration_s', '?')} s measured "
        f"with the outbox backlog (`/healthz` `outbox.depth`) sampled every "
        f"{first.get('sample_interval_s', '?')} s. All N pull the same shared RTSP stream, so the "
        "machine pays for one simulated camera's encoder while the producer side pays for N cameras "
        "(N ffmpeg remuxers, N outbox pipelines, N times the bytes into Kubo, the cluster and the "
        "mirror). The sweep stops after the first step not carried.",
        "",
        "A step is **carried** when the backlog does not grow: over the last half of the run the "
        "least-squares line through the backlog adds at most max(1, N/2) segments, and the median "
        "backlog over the last tenth of the samples is at most N. All cameras cut their segments "
        "at the same moment, so a healthy backlog saws between 0 and about N; half a tooth is the "
        "noise a fitted line still shows, while a producer short by a few per cent of its "
        "recording rate adds several teeth within a minute.",
        "",
    ]
    part.body += table(
        ["measure", "result", "target"],
        [
            [
                "most cameras carried (every smaller step carried too)",
                f"**{shown}**",
                f">= {CAMERAS_TARGET}",
            ]
        ],
    )
    part.body += ["", "Each step, with the comparison: the producer's CPU beside its ffmpeg remuxers'.", ""]
    rows = []
    for s in steps:
        v, cpu = s["verdict"], s["cpu_pct"]
        rows.append(
            [
                str(s["cameras"]),
                "yes" if v["carried"] else f"**no**: {v['reason']}",
                f"{num(v['growth'], 1)} (<= {num(v['growth_allowed'], 1)})",
                f"{num(v['final'], 1)} (<= {num(v['final_allowed'])})",
                str(s["outbox_depth_start_end_max"][2]),
                f"{num(s['oldest_age_s_max'], 1)} s",
                f"**{pct(cpu['producer'])}**",
                pct(cpu["ffmpeg_all"]),
                num(cpu.get("producer_over_ffmpeg"), 2),
                pct(cpu["kubo"]),
                pct(cpu["machine"]),
                f"{num(s['segments_recorded'])} / {num(s['segments_announced'])}",
                str(s["ffmpeg_restarts_during_run"]),
            ]
        )
    part.body += table(
        [
            "cameras",
            "carried",
            "backlog growth, last half",
            "backlog at end",
            "backlog max",
            "oldest unannounced, max",
            "producer CPU (one core)",
            "comparison: its ffmpeg CPU",
            "producer / ffmpeg",
            "Kubo CPU",
            "machine CPU (all cores)",
            "segments recorded / announced",
            "ffmpeg restarts",
        ],
        rows,
    )
    part.body += ["", "Mean outbox step times per step (ms):", ""]
    part.body += table(
        ["cameras", "add", "pin", "link", "catalog", "announce"],
        [
            [
                str(s["cameras"]),
                *(num(s["step_mean_ms"].get(k)) for k in ("add", "pin", "link", "catalog", "announce")),
            ]
            for s in steps
        ],
    )
    part.body += [
        "",
        "The steps of one camera are serial, so a camera keeps up while their sum stays under its "
        "segment length. The machine column is everything on the machine (both cores), including "
        "the devnet's other daemons and anything else running.",
        "",
    ]
    part.body += _figure(figures, "capacity_cpu", "CPU by camera count: producer beside its ffmpeg remuxers")
    part.body += _figure(figures, "capacity_backlog", "Outbox backlog over time at each step")
    part.body += [
        "Earlier finding (hand-run, 2026-11-21, not regenerated): before catalog upserts were keyed "
        "by `_id` (see docs/decisions.md), 16 cameras built a backlog of 912 segments in 5 minutes: "
        "FerretDB's SQLite backend scans the collection for filters other than `_id`. Not measured "
        "yet: a soak of hours against a growing catalog.",
        "",
    ]
    return part


def partition(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    lost = r["not_announced_at_end"]
    drain = r["drain_s"]
    ok = lost == 0 and drain is not None and drain <= r["partition_s"]
    part = Part()
    part.summary.append(
        [
            f"producer: backlog through a {r['partition_s']} s partition",
            f"peak {r['peak_backlog']}, drained {num(drain, 1)} s after the heal, {lost} not announced",
            f"nothing lost; drained within {r['partition_s']} s",
            f"{r['recorded_during_cut']} segments recorded during the cut",
            met(ok),
        ]
    )
    part.body += [
        "A devnet in network namespaces, one host per node. After steady recording the producer's "
        f'host is cut off (`network.fault(dir, "producer", down)`) for {r["partition_s"]} s, then '
        "healed: its cameras, Kubo, cluster peer and producer keep running but reach neither the "
        "catalog nor the mirrors. The backlog is read every "
        f"{r['sample_interval_s']} s straight from the producer's outbox database (the admin port "
        f"is behind the cut link). {r['cameras']} cameras, {r['segment_s']} s segments.",
        "",
    ]
    part.body += table(
        ["measure", "camswarm producer", "target", "comparison: a producer that announced nothing"],
        [
            ["backlog at its peak (during the cut or after it)", f"**{r['peak_backlog']}**", "",
             f"{r['recorded_during_cut']} segments recorded during the cut"],
            ["announcing again (the backlog first shrinks) after the heal", f"{num(r.get('resumed_s'), 1)} s",
             "", ""],
            ["the backlog stops growing (its peak) after the heal", f"{num(_peak_after_heal(r), 1)} s",
             "", ""],
            ["drained (back to one segment per camera) after the heal", f"**{num(drain, 1)} s**",
             f"<= {r['partition_s']} s", ""],
            ["recorded during the cut, not announced at the end", f"**{lost}**", "0", ""],
        ],
    )  # fmt: skip
    part.body += [
        "",
        "After the heal the producer's catalog client reconnects within seconds. Its cluster peer "
        "has lost the mirrors' cluster peers during the cut, and ipfs-cluster 1.1.6 dials lost "
        "peers again only every 30 s (`reBootstrapInterval` in its cluster.go, not configurable); "
        'until then a pin that needs 2 allocations fails with "not enough peers to allocate". On '
        "that error the producer asks its cluster peer to call each peer its pins went to "
        "(`POST /peers`, `node.cluster.Redialer`), which reconnects them in a few seconds instead "
        "of up to 30. Segments stay in the outbox meanwhile; none is lost.",
        "",
    ]
    part.body += _figure(figures, "partition", "Backlog through a partition of the producer")
    return part


def _peak_after_heal(r: dict[str, Any]) -> float | None:
    """Seconds from the heal to the largest backlog sampled after it (when it stopped growing)."""
    after = [(backlog, t) for t, backlog, *_ in r.get("series") or [] if t >= r["healed_at_s"]]
    return max(after)[1] - r["healed_at_s"] if after else None


# --- mirror -----------------------------------------------------------------------------------------


def lag(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r, note = entry["result"], entry.get("note")
    mirrors = r.get("mirrors") or {}
    names = sorted(mirrors)
    floor = r.get("kubo_cat_floor") or {}
    part = Part()
    for name in names:
        m = mirrors[name]
        part.summary.append(
            [
                f"mirror: announcement -> playable at {name}, p50 / p99 ({r['network']['kind']})",
                f"{ms(m['p50_ms'])} / {ms(m['p99_ms'])}",
                f"<= {LAG_P50_MS} ms / <= {num(LAG_P99_MS)} ms",
                f"cat floor {ms(floor.get('p50_ms'))} / {ms(floor.get('p99_ms'))}",
                met(m["target_met"]),
            ]
        )
    part.body += [
        f"Network: **{network_label(r)}**." + (f" {note}" if note else ""),
        "",
        "For each mirror, from the announcement arriving at that mirror's Kubo (a subscription the "
        "benchmark opens on the same node) to the segment's file name appearing in that mirror's "
        "`live.m3u8` (inotify on the camera directory): admission (signature), `cat` through Kubo "
        "(bitswap from the producer), size check, fsynced write, index line, live playlist rewrite. "
        f"{r['cameras']} cameras, {r['segment_s']} s segments "
        f"({num((r.get('segment_bytes_mean') or 0) / 1e6, 2)} MB mean), {r['duration_s']} s.",
        "",
    ]
    if r["network"]["kind"] == "netns":
        part.body += [
            "The benchmark reads from the root namespace, so each announcement reaches it one link "
            "delay after the mirror's Kubo: t0 is moved back by that delay, and the comparison is "
            "timed from its request reaching mirror2's Kubo.",
            "",
        ]

    def row(label: str, key: str, target: str, bold: bool = False) -> list[str]:
        cells = [f"**{ms(mirrors[n][key])}**" if bold else ms(mirrors[n][key]) for n in names]
        return [label, *cells, target, ms(floor.get(key))]

    counts = [
        f"{mirrors[n]['announcements']}"
        + (
            " all playable"
            if not mirrors[n]["not_playable"]
            else f", **{mirrors[n]['not_playable']} not playable**"
        )
        for n in names
    ]
    part.body += table(
        [
            "measure",
            *(f"camswarm {n}" for n in names),
            "target",
            f"comparison: `cat` of the same CID through {floor.get('via', 'another Kubo')}",
        ],
        [
            ["announcements", *counts, "", f"{floor.get('count', 0)} ({floor.get('errors', 0)} errors)"],
            row("p50", "p50_ms", f"<= {LAG_P50_MS} ms", bold=True),
            row("p90", "p90_ms", ""),
            row("p99", "p99_ms", f"<= {num(LAG_P99_MS)} ms", bold=True),
            row("max", "max_ms", ""),
            [
                "mirror's own histogram (mean)",
                *(ms(mirrors[n]["mirror_metric_mean_ms"]) for n in names),
                "",
                "",
            ],
        ],
    )
    part.body += [
        "",
        "The comparison is the bitswap fetch alone; mirror2's own mirror fetches the same CID at the "
        "same time, as mirror1's does, so both see the same contention. What the mirror adds on top "
        "(verifying, the fsynced write, the playlist rewrite) is the difference between the columns: "
        + "; ".join(_added(n, mirrors[n], floor) for n in names)
        + ". A negative difference is within the run's noise (a p99 of few samples is its maximum).",
    ]
    part.body += [""]
    part.body += _figure(figures, "lag", "Histogram and CDF of announcement to playable at each mirror")
    part.body += [
        "Earlier finding (hand-run, not regenerated): in one run pubsub delivered 86 of 88 "
        "announcements to the mirror's subscription; the mirror found the seq hole when the next "
        "announcement came and repaired both from the catalog after a 3 s wait (p99 3.05 s). The "
        "wait is now 1 s, and a camera whose next announcement is late (1.5 segment lengths + 1 s) "
        "also triggers a catalog check.",
        "",
    ]
    return part


def _added(name: str, mirror: dict[str, Any], floor: dict[str, Any]) -> str:
    diffs = []
    for q in ("p50", "p99"):
        ours, theirs = mirror.get(f"{q}_ms"), floor.get(f"{q}_ms")
        diffs.append(
            f"{ours - theirs:+,.0f} ms at {q}" if ours is not None and theirs is not None else f"— at {q}"
        )
    return f"{name} {' and '.join(diffs)}"


def catchup(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    local = r.get("local_cat_rate") or {}
    part = Part()
    minutes = r["offline_s"] / 60
    part.summary.append(
        [
            f"mirror: catch-up after {num(minutes, 1)} min offline",
            f"{num(r['rate_per_s'], 1)} segments/s ({r['segments_repaired']} in {num(r['seconds'], 1)} s)",
            f">= {CATCHUP_RATE:g} segments/s",
            f"local `cat` {num(local.get('rate_per_s'), 1)} segments/s",
            met(r["target_met"]),
        ]
    )
    pinned = r.get("blocks_pinned_at_mirror1_kubo")
    part.body += [
        f"Offline: {r['offline']}, for {r['offline_s']} s while {r['cameras']} cameras record "
        f"{r['segment_s']} s segments; then started again (Kubo and the cluster peer first). Measured "
        "from the mirror answering `/healthz` until its store holds every catalog segment up to the "
        f"highest seq the catalog had at the restart. Fraction of the missed blocks already in the "
        f"mirror node's Kubo at the restart: {num(pinned, 3)}.",
        "",
    ]
    part.body += table(
        [
            "measure",
            "camswarm mirror",
            "target",
            f"comparison: `cat` of the same CIDs, same concurrency, through {local.get('via', '?')} "
            f"(blocks local there: {num(local.get('blocks_local'), 3)})",
        ],
        [
            ["segments repaired", str(r["segments_repaired"]), "", str(local.get("segments", "—"))],
            [
                "time",
                f"**{num(r['seconds'], 1)} s** ({num(r['seconds_from_launch'], 1)} s from process start)",
                "",
                f"{num(local.get('seconds'), 1)} s",
            ],
            [
                "rate",
                f"**{num(r['rate_per_s'], 1)} segments/s** (fetch_concurrency {r['fetch_concurrency']})",
                f">= {CATCHUP_RATE:g} segments/s",
                f"{num(local.get('rate_per_s'), 1)} segments/s",
            ],
        ],
    )
    part.body += [
        "",
        "The comparison is the local Kubo/disk floor for the same reads, not a network floor: the "
        "mirror's own work on top of it is the catalog scan, signature and size checks, sha256 "
        "against the catalog, an fsynced write and index line per segment, and the playlist rewrites.",
        "",
    ]
    return part


# --- gateway ----------------------------------------------------------------------------------------


def http(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    runs = r["runs"]
    part = Part()

    def rate(name: str) -> str:
        run = runs[name]
        mb = f" = {num(run['mb_per_s'])} MB/s" if name in ("signed", "plain") else ""
        return (
            f"{num(run['requests_per_s'])} req/s{mb} "
            f"(p50 {num(run['p50_ms'], 2)} ms, p99 {num(run['p99_ms'], 2)} ms)"
        )

    part.summary += [
        [
            "nginx: live playlist, camswarm / static nginx",
            f"{r['live_over_static']:.2f}",
            f">= {LIVE_OVER_STATIC}",
            f"static {num(runs['static']['requests_per_s'])} req/s",
            met(r["live_over_static"] >= LIVE_OVER_STATIC),
        ],
        [
            "nginx: 1 MiB segment by signed link / plain static",
            f"{r['signed_over_plain']:.2f}",
            f">= {SIGNED_OVER_PLAIN}",
            f"plain {num(runs['plain']['requests_per_s'])} req/s",
            met(r["signed_over_plain"] >= SIGNED_OVER_PLAIN),
        ],
    ]
    sizes = r.get("playlist_bytes") or []
    errors = sum(run["errors"] for run in runs.values())
    requests = sum(run["requests"] for run in runs.values())
    part.body += [
        "A devnet (1 camera, 1 mirror, 2 gateways, the rendered nginx) and beside it a second nginx "
        "with a minimal static config (same `worker_processes auto`, same access-log line) serving "
        "a copy of the live playlist, refreshed before each static run "
        f"({num(max(sizes, default=0))} bytes: a full window of signed links), and the same store "
        f"files. wrk, one thread, {r['duration_s']} s per run, pairs interleaved over "
        f"{r['rounds']} round{'s' if r['rounds'] != 1 else ''}; the figures are means over the rounds. "
        "Everything shares the "
        f"{r.get('cpus', '?')} cores (wrk takes about one).",
        "",
    ]
    part.body += table(
        ["measure", "camswarm path", "comparison: static nginx", "ratio", "target"],
        [
            [
                f"live playlist, {r['connections']} connections, one logged-in session",
                f"**{rate('live')}**",
                rate("static"),
                f"**{r['live_over_static']:.2f}**",
                f">= {LIVE_OVER_STATIC}",
            ],
            [
                "1 MiB segment, 16 connections, signed link (secure_link + sendfile)",
                f"**{rate('signed')}**",
                rate("plain"),
                f"**{r['signed_over_plain']:.2f}**",
                f">= {SIGNED_OVER_PLAIN}",
            ],
            [
                "live playlist, every request a cache miss (new query string each time): the two "
                "gateways' own rate",
                rate("uncached"),
                "",
                "",
                "",
            ],
        ],
    )
    part.body += [
        "",
        f"Errors in all runs: {num(errors)} ({num(requests)} requests). The first row is nginx's "
        "per-session 1 s playlist cache at work: a player polling every target duration always "
        "reaches a gateway, so the third row is what bounds the number of viewers per gateway pair "
        "on this machine.",
        "",
    ]
    return part


def replay(entry: dict[str, Any], figures: dict[str, str]) -> Part:
    r = entry["result"]
    now, before = r["compose_ms"], r["old_way_ms"]
    ok = now["median"] <= r["target_ms"]
    part = Part()
    part.summary.append(
        [
            f"gateway: replay playlist of {num(r['segments'])} segments, median",
            ms(now["median"]),
            f"<= {r['target_ms']} ms",
            f"the previous way {ms(before['median'])}",
            met(ok),
        ]
    )
    part.body += [
        "In process, what the `/replay` handler does after its catalog query: overlap selection is "
        f"done, then {num(r['segments'])} links signed and the VOD playlist written "
        f"({num(r['playlist_bytes'] / 1e6, 1)} MB). {r['repeat']} repetitions.",
        "",
    ]
    part.body += table(
        [
            "measure",
            "camswarm (`compose_replay`)",
            "comparison: the previous way (`signed_url` per link, m3u8's model)",
            "target",
        ],
        [
            ["median", f"**{ms(now['median'])}**", ms(before["median"]), f"<= {r['target_ms']} ms"],
            ["p90", ms(now["p90"]), ms(before["p90"]), ""],
            ["fastest", ms(now["min"]), ms(before["min"]), ""],
        ],
    )
    part.body += [""]
    if not ok:
        part.body += [
            f"**Target not met** ({now['median'] / r['target_ms']:.1f}x over). Profiling (2026-11-21) put "
            "the floor of the current link format at about 140 ms on this machine: one MD5 per link "
            "(each link signs its own CID, for the Kubo fallback) plus formatting each line. Meeting "
            "100 ms needs a link that signs the camera-day directory once per playlist; see "
            "docs/decisions.md. Not measured: the catalog query for these documents, which comes on top.",
            "",
        ]
    return part


# --- the document ---------------------------------------------------------------------------------


Renderer = Callable[[dict[str, Any], dict[str, str]], Part]
RENDERERS: dict[str, tuple[str, Renderer]] = {
    "latency": ("producer: segment closed -> announcement received", latency),
    "capacity": ("producer: cameras carried", capacity),
    "partition": ("producer: backlog through a partition", partition),
    "lag": ("mirror: announcement -> playable", lag),
    "catchup": ("mirror: catch-up", catchup),
    "http": ("nginx: playlists and segments", http),
    "replay": ("gateway: replay playlist", replay),
}


def _section(
    name: str, entry: dict[str, Any] | None, figures: dict[str, str], machine: dict[str, Any]
) -> Part:
    what, renderer = RENDERERS[name]
    if entry is None or "result" not in entry:
        return _missing(name, entry, what)
    part = renderer(entry, figures)
    part.body = _provenance(name, entry, machine) + part.body
    return part


def _machine(machine: dict[str, Any]) -> list[str]:
    tools = machine.get("tools") or {}
    listed = ", ".join(f"{k} {v}" for k, v in tools.items() if v)
    return table(
        ["", ""],
        [
            ["CPU", f"{machine.get('cpu') or '?'}, {machine.get('cores') or '?'} cores"],
            ["RAM", f"{machine.get('ram_gib') or '?'} GiB"],
            ["OS, kernel", f"{machine.get('os') or '?'}, Linux {machine.get('kernel') or '?'}"],
            ["tools", listed or "?"],
            ["load average when the run began", str(machine.get("load_avg_1m_at_start", "?"))],
        ],
    )


def newest_machine(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    dated = [e for e in sections.values() if e.get("machine")]
    if not dated:
        return {}
    machine: dict[str, Any] = max(dated, key=lambda e: str(e.get("measured_at", "")))["machine"]
    return machine


SECTIONS = tuple(RENDERERS)


def render(results: dict[str, Any], figures: dict[str, str]) -> str:
    """The whole of docs/benchmarks.md."""
    sections: dict[str, dict[str, Any]] = results.get("sections") or {}
    machine = newest_machine(sections)
    parts = {name: _section(name, sections.get(name), figures, machine) for name in SECTIONS}
    quick = sorted(name for name, e in sections.items() if e.get("quick"))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/report.py) from the measurements in "
        "[bench/results.json](bench/results.json), next to the figures; do not edit by hand. "
        "Rerun one part with `make bench ONLY=<section>` (sections: "
        + ", ".join(f"`{s}`" for s in SECTIONS)
        + "); `make bench QUICK=1` is a smoke run with short durations. Each benchmark starts and "
        "removes its own devnet of real daemons (Kubo, ipfs-cluster, FerretDB, ffmpeg, GStreamer RTSP "
        "cameras at 960x540, 25 fps, about 2 Mbit/s), and every comparison is measured in the same run "
        "as the figure it sits beside. Single runs, on a machine shared with other work.",
        "",
    ]
    if quick:
        lines += [
            "> **QUICK smoke run** for "
            + ", ".join(f"`{q}`" for q in quick)
            + ": durations cut to seconds, so these figures check that the benchmarks work, "
            "not how fast camswarm is. Run `make bench` for the figures of record.",
            "",
        ]
    lines += ["## Machine", "", *_machine(machine), ""]
    lines += ["## Summary", ""]
    lines += table(
        ["figure", "measured", "target", "comparison (same run)", "met"],
        [row for name in SECTIONS for row in parts[name].summary],
    )
    headings = {
        "latency": "## Producer\n\n### Segment closed -> announcement received",
        "capacity": "### Cameras carried, and CPU",
        "partition": "### Backlog through a partition of the producer",
        "lag": "## Mirror\n\n### Announcement -> playable at each mirror",
        "catchup": "### Catch-up after an outage",
        "http": "## Gateway and nginx\n\n### Playlists and segments through nginx, beside a static nginx",
        "replay": "### Replay playlist composed at the gateway",
    }
    for name in SECTIONS:
        lines += ["", headings[name], ""]
        lines += parts[name].body
    return "\n".join(tidy(lines)) + "\n"


WIDTH = 100


def tidy(lines: Sequence[str]) -> list[str]:
    """Prose wrapped at WIDTH columns (tables, code, headings and images kept as they are);
    no runs of blank lines; none at the end."""
    out: list[str] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if line == "" and (not out or out[-1] == ""):
            continue
        if fenced or line.startswith(("|", "```", "![", "#")) or len(line) <= WIDTH:
            out.append(line)
            continue
        quote = "> " if line.startswith("> ") else ""
        out += textwrap.wrap(
            line.removeprefix(quote),
            WIDTH,
            initial_indent=quote,
            subsequent_indent=quote,
            break_long_words=False,
            break_on_hyphens=False,
        )
    while out and out[-1] == "":
        out.pop()
    return out
