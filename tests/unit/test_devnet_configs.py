from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from node.config import parse_section
from node.devnet.configs import (
    PeerAddr,
    cluster_private_config,
    gateway_config,
    kubo_private_config,
    new_cluster_secret,
    new_swarm_key,
)
from node.devnet.state import (
    CameraSpec,
    DevnetState,
    NodePorts,
    NodeSpec,
    camera_specs,
    free_ports,
    node_names,
)

KUBO_BASE = {
    "Identity": {"PeerID": "12D3KooWself"},
    "Bootstrap": ["auto"],
    "AutoConf": {"Enabled": True},
    "Routing": {"Type": "auto", "DelegatedRouters": ["auto"]},
    "DNS": {"Resolvers": {".": "auto"}},
    "Addresses": {"Swarm": ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]},
}


def test_kubo_config_is_private_and_loopback() -> None:
    peer = PeerAddr("12D3KooWother", "/ip4/127.0.0.1/tcp/4102")
    doc = kubo_private_config(KUBO_BASE, api_port=5101, gateway_port=8101, swarm_port=4101, peers=[peer])
    assert doc["Addresses"]["API"] == "/ip4/127.0.0.1/tcp/5101"
    assert doc["Addresses"]["Gateway"] == "/ip4/127.0.0.1/tcp/8101"
    assert doc["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/4101"]
    assert doc["Bootstrap"] == []
    assert doc["AutoConf"]["Enabled"] is False
    assert doc["Pubsub"]["Enabled"] is True
    assert doc["Peering"]["Peers"] == [{"ID": "12D3KooWother", "Addrs": ["/ip4/127.0.0.1/tcp/4102"]}]
    assert all(
        doc["Swarm"]["Transports"]["Network"][t] is False for t in ("QUIC", "WebTransport", "WebRTCDirect")
    )
    text = json.dumps(doc)
    assert '"auto"' not in text
    assert "0.0.0.0" not in text
    assert doc["Identity"] == KUBO_BASE["Identity"]
    assert KUBO_BASE["Bootstrap"] == ["auto"], "input must not be modified"


CLUSTER_BASE = {
    "cluster": {
        "listen_multiaddress": ["/ip4/0.0.0.0/tcp/9096", "/ip4/0.0.0.0/udp/9096/quic"],
        "mdns_interval": "10s",
    },
    "consensus": {"crdt": {"trusted_peers": ["*"]}},
    "api": {"restapi": {}, "ipfsproxy": {}, "pinsvcapi": {}},
    "ipfs_connector": {"ipfshttp": {"node_multiaddress": "/ip4/127.0.0.1/tcp/5001"}},
    "datastore": {"pebble": {"pebble_options": {"cache_size_bytes": 1 << 30}}},
}


def _cluster(secret: str) -> dict[str, object]:
    return cluster_private_config(
        CLUSTER_BASE,
        peername="mirror1",
        secret=secret,
        cluster_port=9196,
        api_port=9194,
        kubo_api_port=5101,
        trusted_peers=["p1", "p2"],
    )


def test_cluster_config_trusts_only_devnet_peers() -> None:
    doc = _cluster(new_cluster_secret())
    assert doc["consensus"]["crdt"]["trusted_peers"] == ["p1", "p2"]  # type: ignore[index]
    assert doc["cluster"]["listen_multiaddress"] == ["/ip4/127.0.0.1/tcp/9196"]  # type: ignore[index]
    assert doc["cluster"]["mdns_interval"] == "0s"  # type: ignore[index]
    assert doc["ipfs_connector"]["ipfshttp"]["node_multiaddress"] == "/ip4/127.0.0.1/tcp/5101"  # type: ignore[index]
    assert "0.0.0.0" not in json.dumps(doc)
    assert set(doc["api"]) == {"restapi"}  # type: ignore[call-overload]


@pytest.mark.parametrize("secret", ["", "abc", "G" * 64, "A" * 64])
def test_cluster_secret_must_be_hex32(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        _cluster(secret)


def test_swarm_key_format() -> None:
    lines = new_swarm_key().splitlines()
    assert lines[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"]
    assert re.fullmatch(r"[0-9a-f]{64}", lines[2])
    assert new_swarm_key() != new_swarm_key()


def test_state_round_trip() -> None:
    state = DevnetState(
        nodes=[NodeSpec("producer", NodePorts(1, 2, 3, 4, 5), "p", "c")],
        cameras=[CameraSpec("factory1", "cam1", 8554)],
        catalog_port=27017,
        cluster_secret="00" * 32,
        segment_seconds=4,
    )
    again = DevnetState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.cameras[0].rtsp == "rtsp://127.0.0.1:8554/cam1"
    with pytest.raises(KeyError, match="cam9"):
        state.camera("cam9")


def test_state_version_is_checked() -> None:
    with pytest.raises(ValueError, match="version"):
        DevnetState.from_json({"version": 99})


def test_free_ports_are_distinct_and_avoid_taken() -> None:
    ports = free_ports(50, taken={1})
    assert len(set(ports)) == 50
    assert all(1024 < p < 65536 for p in ports)


def test_names_and_cameras() -> None:
    assert node_names(2) == ["producer", "mirror1", "mirror2"]
    cams = camera_specs(3, [10, 11, 12])
    assert [(c.factory, c.device, c.port) for c in cams] == [
        ("factory1", "cam1", 10),
        ("factory2", "cam2", 11),
        ("factory1", "cam3", 12),
    ]


def test_gateway_config_is_a_valid_gateway_config() -> None:
    text = gateway_config(
        listen_port=8091,
        store_dir='/tmp/net "x"/nodes/mirror1/store',
        kubo_gateway="http://127.0.0.1:8101",
        catalog="mongodb://127.0.0.1:27017/",
        users_file="/tmp/net/users.json",
        secret_file="/tmp/net/link.secret",
    )
    node = parse_section(GatewayConfig, tomllib.loads(text), "").node
    assert node.listen == "127.0.0.1:8091"
    assert node.store_dir == Path('/tmp/net "x"/nodes/mirror1/store')
    assert node.kubo_gateway == "http://127.0.0.1:8101"
    assert node.catalog == "mongodb://127.0.0.1:27017/"
    assert node.users_file == Path("/tmp/net/users.json")
    assert node.secret_file == Path("/tmp/net/link.secret")


def _state(mirrors: int) -> DevnetState:
    return DevnetState(
        nodes=[
            NodeSpec(n, NodePorts(*range(10 * i + 1, 10 * i + 6))) for i, n in enumerate(node_names(mirrors))
        ],
        cameras=[],
        catalog_port=27017,
        cluster_secret="00" * 32,
    )


@pytest.mark.parametrize(
    ("mirrors", "stores"),
    [
        pytest.param(0, {}, id="no-mirror-no-gateways"),
        pytest.param(1, {"gateway1": "mirror1", "gateway2": "mirror1"}, id="one-mirror-shared"),
        pytest.param(2, {"gateway1": "mirror1", "gateway2": "mirror2"}, id="one-each"),
        pytest.param(3, {"gateway1": "mirror1", "gateway2": "mirror2"}, id="more-mirrors"),
    ],
)
def test_gateways_sit_beside_mirror_stores(mirrors: int, stores: dict[str, str]) -> None:
    state = _state(mirrors)
    assert {g: state.gateway_store_node(g) for g in state.gateways} == stores


def test_front_ports_are_kept_and_counted_as_used() -> None:
    state = _state(1)
    state.gateway_ports = {"gateway1": 9001, "gateway2": 9002}
    state.nginx_port = 9000
    again = DevnetState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.gateway_listen("gateway2") == "127.0.0.1:9002"
    assert again.web_url == "http://127.0.0.1:9000/"
    assert {9000, 9001, 9002} <= again.used_ports()
    assert 0 not in again.used_ports()


def test_old_state_files_have_no_front_ports() -> None:
    doc = _state(1).to_json()
    del doc["gateway_ports"], doc["nginx_port"]
    state = DevnetState.from_json(doc)
    assert state.gateway_ports == {} and state.nginx_port == 0


def test_front_processes_start_after_mirrors_and_stop_first() -> None:
    from node.devnet import network

    state = _state(2)
    names = network.process_names(state)
    assert names[-6:] == ["mirror1", "mirror2", "anchor", "gateway1", "gateway2", "nginx"]
    assert names.index("chain") < names.index(
        "producer"
    )  # the producer's periods need no chain, the anchor does
    ranks = {name: network._stop_rank(name) for name in names}
    assert ranks["nginx"] < ranks["gateway1"] == ranks["mirror1"] == ranks["producer"] < ranks["kubo-mirror1"]
    assert ranks["anchor"] == ranks["producer"] < ranks["chain"] < ranks["catalog"]
    assert "nginx" not in network.process_names(_state(0))


def test_front_ports_are_planned_once_and_avoid_the_others() -> None:
    from node.devnet import network

    state = _state(2)
    taken = state.used_ports()
    network._plan_front(state)
    planned = (dict(state.gateway_ports), state.nginx_port)
    assert set(state.gateway_ports) == {"gateway1", "gateway2"}
    ports = [*state.gateway_ports.values(), state.nginx_port]
    assert len(set(ports)) == 3 and not set(ports) & taken
    network._plan_front(state)
    assert (state.gateway_ports, state.nginx_port) == planned


def test_anchor_config_parses_and_producer_periods_follow_the_devnet() -> None:
    import tomllib

    from node.anchoring import AnchorConfig
    from node.config import parse_section
    from node.devnet.configs import anchor_config

    text = anchor_config(
        catalog="mongodb://127.0.0.1:1/",
        rpc_url="http://127.0.0.1:2",
        contract="0x" + "ab" * 20,
        key_file="/tmp/anchor.key",
        period_s=60,
        kubo_api="http://127.0.0.1:3",
        admin_port=4,
    )
    settings = parse_section(AnchorConfig, tomllib.loads(text)).anchor
    assert (settings.period_s, settings.admin_listen, settings.contract) == (
        60,
        "127.0.0.1:4",
        "0x" + "ab" * 20,
    )
