"""The chaos suite, shortened to fit CI: every fault of `make chaos`, held 15 s instead of 120 s.

A --netns devnet (each host in its own network namespace, links carried by linkd) with
two cameras and two mirrors; after each fault heals, every segment ffmpeg wrote must be in
the catalog once and byte-equal in both mirrors' stores and day playlists within the bound.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from node.devnet import chaos, netns, network
from node.devnet.state import load_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

HOLD_S = 15.0
BOUND_S = 150.0


async def test_every_fault_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "chaos"
    isolation: dict[str, str] = {}

    def check_isolation(message: str) -> None:
        # Once the hosts exist: no host has a route beyond the devnet's own subnet.
        state = load_state(directory.resolve())
        if message.startswith("starting the producer") and state is not None and state.netns is not None:
            for host in state.netns.hosts:
                ns = netns.namespace(state.netns, host)
                routes = subprocess.run(
                    ["ip", "-n", ns, "route"], capture_output=True, text=True, check=True
                ).stdout
                isolation[host] = routes.strip()

    rows = await chaos.chaos(
        directory, cameras=2, mirrors=2, hold=HOLD_S, bound=BOUND_S, progress=check_isolation
    )
    print("\n" + chaos.table(rows))
    assert isolation, "the hosts' routes were not read"
    for host, routes in isolation.items():
        assert "default" not in routes and len(routes.splitlines()) == 1, (host, routes)
    labels = [r.fault for r in rows]
    assert len(labels) == 1 + len(chaos.faults()), labels
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    # The faults bit: footage was recorded during each held fault and had to be carried over.
    assert all(r.at_risk > 0 for r in rows if r.held_s), rows
    # The devnet is gone: no namespace, no process.
    state = load_state(directory.resolve())
    assert state is not None and state.netns is not None
    assert not any(Path("/run/netns", netns.namespace(state.netns, h)).exists() for h in state.netns.hosts)
    assert not network.status(directory)["running"]
