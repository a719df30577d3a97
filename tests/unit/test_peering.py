"""Which peering peers a node redials: the configured ones Kubo is not connected to."""

from __future__ import annotations

import pytest

from node.peering import dial_addresses

pytestmark = pytest.mark.unit

A = {"ID": "12D3KooWA", "Addrs": ["/ip4/10.77.1.11/tcp/4001", "/ip4/10.77.1.11/tcp/4002"]}
B = {"ID": "12D3KooWB", "Addrs": []}
C = {"ID": "12D3KooWC", "Addrs": ["/ip4/10.77.1.12/tcp/4001"]}


def test_only_the_lost_peers_are_dialled_at_their_first_address() -> None:
    assert dial_addresses([A, B, C], {"12D3KooWC"}) == {
        "12D3KooWA": "/ip4/10.77.1.11/tcp/4001/p2p/12D3KooWA",
        "12D3KooWB": "/p2p/12D3KooWB",  # no address configured: Kubo's peerstore has to know one
    }
    assert dial_addresses([A, B, C], {"12D3KooWA", "12D3KooWB", "12D3KooWC"}) == {}


def test_entries_without_an_id_are_ignored() -> None:
    assert dial_addresses([{"Addrs": ["/ip4/1.2.3.4/tcp/1"]}, {"ID": ""}, {}], set()) == {}
