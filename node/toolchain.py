"""Pinned versions of the external tools camswarm runs, and where they live.

This module is the single source of truth for tool versions: ``make deps``
reads it (``python3 node/toolchain.py env``) before any virtualenv exists, so it
must import nothing outside the standard library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

KUBO_VERSION = "v0.43.0"
CLUSTER_VERSION = "v1.1.6"
FERRETDB_VERSION = "v1.24.2"

REPO_ROOT = Path(__file__).resolve().parent.parent
FERRETDB_SRC = REPO_ROOT / "tools" / "ferretdb"


class ToolMissing(RuntimeError):
    """A required executable is not installed; the message says how to get it."""


def tools_dir() -> Path:
    """Root of the versioned tool cache (outside the clone, shared by clones)."""
    explicit = os.environ.get("CAMSWARM_TOOLS")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "camswarm" / "tools"


def ferretdb_build_id() -> str:
    """Version plus a hash of the wrapper sources, so an edit forces a rebuild."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        path = FERRETDB_SRC / name
        if path.exists():
            digest.update(path.read_bytes())
    return f"{FERRETDB_VERSION}-{digest.hexdigest()[:10]}"


@dataclass(frozen=True)
class ToolPaths:
    ipfs: Path
    cluster_service: Path
    cluster_ctl: Path
    ferretdb: Path


def tool_paths(root: Path | None = None) -> ToolPaths:
    base = root or tools_dir()
    cluster_bin = base / f"ipfs-cluster-{CLUSTER_VERSION}" / "bin"
    return ToolPaths(
        ipfs=base / f"kubo-{KUBO_VERSION}" / "bin" / "ipfs",
        cluster_service=cluster_bin / "ipfs-cluster-service",
        cluster_ctl=cluster_bin / "ipfs-cluster-ctl",
        ferretdb=base / f"ferretdb-{ferretdb_build_id()}" / "bin" / "camswarm-ferretdb",
    )


def require(path: Path) -> Path:
    """Return ``path`` if it is an executable file, else raise ToolMissing."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise ToolMissing(f"{path.name} not found at {path}; run `make deps` to build the pinned toolchain")


def require_system(name: str, package: str) -> Path:
    """Locate a Debian-provided executable or explain which package provides it."""
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(f"{name} not found on PATH; run `make deps` (installs Debian package {package})")
    return Path(found)


def _shell_env() -> str:
    paths = tool_paths()
    lines = {
        "KUBO_VERSION": KUBO_VERSION,
        "CLUSTER_VERSION": CLUSTER_VERSION,
        "FERRETDB_VERSION": FERRETDB_VERSION,
        "TOOLS_DIR": str(tools_dir()),
        "IPFS_BIN": str(paths.ipfs),
        "CLUSTER_SERVICE_BIN": str(paths.cluster_service),
        "CLUSTER_CTL_BIN": str(paths.cluster_ctl),
        "FERRETDB_BIN": str(paths.ferretdb),
    }
    return "".join(f"{key}='{value}'\n" for key, value in lines.items())


if __name__ == "__main__":
    if sys.argv[1:] == ["env"]:
        sys.stdout.write(_shell_env())
    else:
        sys.stderr.write("usage: python3 node/toolchain.py env\n")
        sys.exit(2)
