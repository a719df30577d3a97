"""The chaos suite, shortened to fit CI: every fault of `make chaos`, held 15 s instead of 120 s.

A --netns devnet (each host in its own network namespace, links carried by linkd) with
two cameras (cam1 encrypted) and two mirrors; after each fault heals, every segment ffmpeg wrote must be in
the catalog once and byte-equal in both mirrors' stores and day playlists within the bound.
At the end every period closed during the suite must be anchored on chain and verify in
both mirrors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node.devnet import chaos, netns, network
from node.devnet.state import load_state
from node.procs import run_checked

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

HOLD_S = 15.0
BOUND_S = 150.0


async def test_every_fault_loses_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "chaos"
    try:
        rows = await chaos.chaos(directory, cameras=2, mirrors=2, hold=HOLD_S, bound=BOUND_S, keep=True)
        # No host has a route beyond the devnet's own subnet.
        state = load_state(directory.resolve())
        assert state is not None and state.netns is not None
        assert state.encrypted == list(chaos.ENCRYPTED), "the suite covers an encrypted camera"
        for host in state.netns.hosts:
            routes = (await run_checked(["ip", "-n", netns.namespace(state.netns, host), "route"])).strip()
            assert "default" not in routes and len(routes.splitlines()) == 1, (host, routes)
    finally:
        if load_state(directory.resolve()) is not None:  # a failed `up` may leave no state
            await network.down(directory)
    print("\n" + chaos.table(rows))
    labels = [r.fault for r in rows]
    assert len(labels) == 2 + len(chaos.faults()), labels  # the baseline, each fault, integrity
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert rows[-1].fault.startswith(chaos.INTEGRITY) and rows[-1].at_risk > 0, rows[-1]
    # The faults bit: footage was recorded during each held fault and had to be carried over.
    assert all(r.at_risk > 0 for r in rows if r.held_s), rows
    # The devnet is gone: no namespace, no process.
    assert not any(Path("/run/netns", netns.namespace(state.netns, h)).exists() for h in state.netns.hosts)
    assert not network.status(directory)["running"]
