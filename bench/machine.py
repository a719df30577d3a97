"""What the benchmarks ran on, read at run time: CPU, cores, RAM, OS, kernel and tool versions."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node import toolchain


def _first_match(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = re.search(pattern, text, re.M)
    return found[1].strip() if found else None


def _version(argv: list[str], pattern: str) -> str | None:
    """The version a tool prints (some print it on stderr, wrk with exit status 1)."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(pattern, done.stdout + done.stderr)
    return found[1] if found else None


@functools.cache  # the same for every section of a run: ask each tool once
def tool_versions() -> dict[str, str | None]:
    paths = toolchain.tool_paths()
    try:
        import matplotlib

        mpl: str | None = matplotlib.__version__
    except ImportError:
        mpl = None
    return {
        "kubo": _version([str(paths.ipfs), "version"], r"version ([\d.]+)"),
        "ipfs-cluster": _version([str(paths.cluster_service), "--version"], r"version ([\d.]+)"),
        # The catalog wrapper has no --version; the version it is built from is pinned.
        "ferretdb": toolchain.FERRETDB_VERSION.removeprefix("v") if paths.ferretdb.is_file() else None,
        "ffmpeg": _version(["ffmpeg", "-version"], r"ffmpeg version (\S+)"),
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "wrk": _version(["wrk", "-v"], r"wrk (\S+)"),
        "gstreamer": _version(["gst-launch-1.0", "--version"], r"GStreamer ([\d.]+)"),
        "python": platform.python_version(),
        "matplotlib": mpl,
    }


def describe() -> dict[str, Any]:
    """The machine as the report prints it; every field read now, None when unreadable."""
    mem_kb = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+) kB")
    return {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _first_match("/proc/cpuinfo", r"^model name\s*:(.*)$"),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kb) / 1024**2, 1) if mem_kb else None,
        "os": _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)"?$'),
        "kernel": platform.release(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "tools": dict(tool_versions()),
    }
