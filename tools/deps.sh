#!/usr/bin/env bash
# Install what camswarm needs, and only what is missing. Safe to rerun: a
# second run with nothing to do finishes in seconds.
#   - Debian packages (ffmpeg, nginx, GStreamer RTSP server for test cameras)
#   - Kubo and ipfs-cluster built from the Go module proxy at pinned versions
#   - the FerretDB catalog wrapper built from tools/ferretdb
#   - solcjs and anvil (contracts/node_modules) for the footage registry contract
#   - a virtualenv with camswarm installed editable with its dev extra
# Binaries go to a versioned tool cache outside the clone ($CAMSWARM_TOOLS,
# default ~/.cache/camswarm/tools) so clones share them and a version bump
# rebuilds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

log() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"; fi
}

# --- Debian packages -------------------------------------------------------
APT_PACKAGES=(
    ffmpeg nginx iproute2
    python3-gi gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
)
# `--test` (make test) adds what only the test suite uses: Debian's Chromium for the browser test,
# driven by playwright-core from gateway/web's devDependencies.
# `--bench` (make bench-deps) adds wrk, the load generator of bench/gateway_bench.py, and the
# virtualenv's `bench` extra (matplotlib, for the plots of bench/report.py).
case "${1:-}" in
    --test) APT_PACKAGES+=(chromium) ;;
    --bench) APT_PACKAGES+=(wrk) ;;
    "") ;;
    *) die "unknown option ${1} (use --test or --bench)" ;;
esac
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
    || die "GStreamer RTSP server bindings unusable by /usr/bin/python3"

# --- Go tools ----------------------------------------------------------------
command -v go >/dev/null || die "Go not found; install Go >= 1.26.5"
eval "$("$PYTHON" node/toolchain.py env)"
go_version="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n1.26.5\n' "$go_version" | sort -V | head -n1)" != "1.26.5" ]; then
    die "Go $go_version is too old; Kubo $KUBO_VERSION needs Go >= 1.26.5"
fi

# Build a command of a module at a pinned version with that module's own
# go.mod/go.sum (what `go install pkg@version` does). `go install` itself is
# not used because it also asks the proxy for the module's version list (to
# report deprecations), which the reachable proxy refuses.
build_module() {  # module version out_dir pkg...
    local module="$1" version="$2" out="$3"; shift 3
    local dir tmp
    dir="$(go mod download -json "$module@$version" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    tmp="$out.tmp.$$"
    mkdir -p "$tmp"
    (cd "$dir" && go build -trimpath -o "$tmp/" "$@")
    rm -rf "$out"; mv "$tmp" "$out"
}

if [ -x "$IPFS_BIN" ]; then log "kubo $KUBO_VERSION present"; else
    log "building kubo $KUBO_VERSION (cold build takes several minutes)"
    build_module github.com/ipfs/kubo "$KUBO_VERSION" "$(dirname "$IPFS_BIN")" ./cmd/ipfs
fi
if [ -x "$CLUSTER_SERVICE_BIN" ] && [ -x "$CLUSTER_CTL_BIN" ]; then log "ipfs-cluster $CLUSTER_VERSION present"; else
    log "building ipfs-cluster $CLUSTER_VERSION (cold build takes several minutes)"
    build_module github.com/ipfs-cluster/ipfs-cluster "$CLUSTER_VERSION" "$(dirname "$CLUSTER_SERVICE_BIN")" \
        ./cmd/ipfs-cluster-service ./cmd/ipfs-cluster-ctl
fi
if [ -x "$FERRETDB_BIN" ]; then log "ferretdb $FERRETDB_VERSION present"; else
    log "building the FerretDB $FERRETDB_VERSION catalog wrapper"
    out="$(dirname "$FERRETDB_BIN")"; tmp="$out.tmp.$$"
    mkdir -p "$tmp"
    (cd tools/ferretdb && go build -trimpath -o "$tmp/camswarm-ferretdb" .)
    rm -rf "$out"; mv "$tmp" "$out"
fi

# --- Web assets: hls.js from the npm registry, pinned by gateway/web/package-lock.json ---
if ! command -v npm >/dev/null; then
    log "installing Debian packages: nodejs npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
web_stamp="gateway/web/node_modules/.camswarm-deps-$(sha256sum gateway/web/package-lock.json | cut -c1-16)"
if [ -f "$web_stamp" ]; then log "web assets up to date"; else
    log "installing web assets (npm ci in gateway/web)"
    (cd gateway/web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    touch "$web_stamp"
fi

# --- Contract toolchain: solcjs and anvil, pinned by contracts/package-lock.json ---
# anvil comes as the binary inside @foundry-rs/anvil-linux-amd64, taken directly rather
# than through the @foundry-rs/anvil wrapper: the wrapper's lock would need every platform
# package, and its postinstall downloads one when missing. No install scripts run.
contracts_stamp="contracts/node_modules/.camswarm-deps-$(sha256sum contracts/package-lock.json | cut -c1-16)"
if [ -f "$contracts_stamp" ]; then log "contract toolchain up to date"; else
    log "installing the contract toolchain (npm ci in contracts)"
    (cd contracts && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    touch "$contracts_stamp"
fi

# --- Python virtualenv ---------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
stamp="$VENV/.camswarm-deps-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then log "virtualenv up to date"; else
    log "installing camswarm into $VENV"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    rm -f "$VENV"/.camswarm-deps-*
    touch "$stamp"
fi
if [ "${1:-}" = --bench ]; then
    bench_stamp="$VENV/.camswarm-bench-$(sha256sum setup.cfg | cut -c1-16)"
    if [ -f "$bench_stamp" ]; then log "bench packages up to date"; else
        log "installing the bench extra (matplotlib) into $VENV"
        "$VENV/bin/python" -m pip install -q -e ".[dev,bench]"
        rm -f "$VENV"/.camswarm-bench-*
        touch "$bench_stamp"
    fi
fi
log "ready (tools in $TOOLS_DIR)"
