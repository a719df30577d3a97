"""Pure transforms of Kubo and ipfs-cluster config documents for a private network.

Each takes the document the daemon's own ``init`` wrote and returns a new one
bound to one address (loopback, or a network namespace's), with every route to the public network closed. No
I/O, so the exact settings are asserted in unit tests.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PeerAddr:
    peer_id: str
    multiaddr: str  # without the /p2p/ suffix

    @property
    def full(self) -> str:
        return f"{self.multiaddr}/p2p/{self.peer_id}"


def new_swarm_key() -> str:
    """Contents of a libp2p private-network ``swarm.key`` (PSK v1, 32 random bytes in hex)."""
    return "/key/swarm/psk/1.0.0/\n/base16/\n" + secrets.token_hex(32) + "\n"


def new_cluster_secret() -> str:
    return secrets.token_hex(32)


def tcp(address: str, port: int) -> str:
    return f"/ip4/{address}/tcp/{port}"


def loopback_tcp(port: int) -> str:
    return tcp(LOOPBACK, port)


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    node = doc
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def kubo_private_config(
    base: dict[str, Any],
    *,
    api_port: int,
    gateway_port: int,
    swarm_port: int,
    peers: Sequence[PeerAddr],
    address: str = LOOPBACK,
) -> dict[str, Any]:
    """A Kubo config for one node of a private swarm with pubsub, bound to ``address`` only."""
    doc = copy.deepcopy(base)
    settings: dict[str, Any] = {
        "Addresses.API": tcp(address, api_port),
        "Addresses.Gateway": tcp(address, gateway_port),
        "Addresses.Swarm": [tcp(address, swarm_port)],
        "Addresses.Announce": [],
        "Addresses.AppendAnnounce": [],
        "Addresses.NoAnnounce": [],
        # No public bootstrap peers and no "auto" placeholders resolved from the internet.
        "Bootstrap": [],
        "AutoConf.Enabled": False,
        "Routing.Type": "dht",
        "Routing.DelegatedRouters": [],
        "Ipns.DelegatedPublishers": [],
        "DNS.Resolvers": {},
        "Discovery.MDNS.Enabled": False,
        "AutoTLS.Enabled": False,
        # A pre-shared key network only works over TCP; QUIC-based transports are refused.
        "Swarm.Transports.Network.TCP": True,
        "Swarm.Transports.Network.QUIC": False,
        "Swarm.Transports.Network.WebTransport": False,
        "Swarm.Transports.Network.WebRTCDirect": False,
        "Swarm.Transports.Network.Websocket": False,
        "Swarm.RelayClient.Enabled": False,
        "Swarm.RelayService.Enabled": False,
        "Swarm.EnableHolePunching": False,
        "Swarm.DisableNatPortMap": True,
        "AutoNAT.ServiceMode": "disabled",
        "Pubsub.Enabled": True,
        "Pubsub.Router": "gossipsub",
        # The gateway serves segments a mirror lacks, so it may fetch from peers.
        "Gateway.NoFetch": False,
        "Peering.Peers": [{"ID": p.peer_id, "Addrs": [p.multiaddr]} for p in peers],
        "Plugins.Plugins.telemetry.Config.Mode": "off",
    }
    for key, value in settings.items():
        _set(doc, key, value)
    return doc


def cluster_private_config(
    base: dict[str, Any],
    *,
    peername: str,
    secret: str,
    cluster_port: int,
    api_port: int,
    kubo_api_port: int,
    trusted_peers: Sequence[str],
    address: str = LOOPBACK,
) -> dict[str, Any]:
    """An ipfs-cluster service.json for one crdt peer trusting only the devnet's peers."""
    if len(secret) != 64 or any(c not in "0123456789abcdef" for c in secret):
        raise ValueError("cluster secret must be 32 bytes in lower-case hex")
    doc = copy.deepcopy(base)
    settings: dict[str, Any] = {
        "cluster.peername": peername,
        "cluster.secret": secret,
        "cluster.listen_multiaddress": [tcp(address, cluster_port)],
        "cluster.enable_relay_hop": False,
        "cluster.mdns_interval": "0s",
        "cluster.leave_on_shutdown": False,
        # Short intervals: a devnet should converge in seconds, not minutes.
        "cluster.monitor_ping_interval": "2s",
        "cluster.peer_watch_interval": "2s",
        "cluster.state_sync_interval": "1m0s",
        "cluster.pin_recover_interval": "1m0s",
        "consensus.crdt.trusted_peers": list(trusted_peers),
        "consensus.crdt.cluster_name": "camswarm",
        "api.restapi.http_listen_multiaddress": tcp(address, api_port),
        "ipfs_connector.ipfshttp.node_multiaddress": tcp(address, kubo_api_port),
        "ipfs_connector.ipfshttp.connect_swarms_delay": "2s",
        "cluster.pubsub.heartbeat_interval": "1s",
        "monitor.pubsubmon.check_interval": "2s",
        "informer.disk.metric_ttl": "5s",
        "informer.pinqueue.metric_ttl": "5s",
        "informer.tags.metric_ttl": "5s",
    }
    for key, value in settings.items():
        _set(doc, key, value)
    # An API section left out of service.json is not started: no IPFS proxy, no pinning-service API.
    for unused in ("ipfsproxy", "pinsvcapi"):
        doc.get("api", {}).pop(unused, None)
    pebble = doc.get("datastore", {}).get("pebble", {}).get("pebble_options")
    if isinstance(pebble, dict):
        pebble["cache_size_bytes"] = 64 << 20  # the default 1 GiB per peer is sized for servers
        pebble["mem_table_size"] = 16 << 20
    return doc


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ProducerCamera:
    factory: str
    device: str
    rtsp_url: str
    encrypt: bool = False
    key_rotation_segments: int = 60


def producer_config(
    *,
    kubo_api: str,
    cluster_api: str,
    catalog: str,
    topic: str,
    state_dir: str,
    admin_port: int,
    cameras: Sequence[ProducerCamera],
    segment_seconds: int = 2,
    replication: tuple[int, int] = (1, 3),
    period_s: int = 3600,
    master_key_file: str = "",
    host: str = LOOPBACK,
) -> str:
    """The devnet producer's TOML config (same format as docs/producer.example.toml)."""
    lines = [
        "# Written by `camswarm devnet up`; edits are replaced at the next start.",
        "[node]",
        f"kubo_api = {_toml_str(kubo_api)}",
        f"cluster_api = {_toml_str(cluster_api)}",
        f"catalog = {_toml_str(catalog)}",
        f"topic = {_toml_str(topic)}",
        f"state_dir = {_toml_str(state_dir)}",
        f'admin_listen = "{host}:{admin_port}"',
        "local_retention_hours = 1",
        "disk_min_free_mb = 256",
    ]
    if master_key_file:
        lines.append(f"master_key_file = {_toml_str(master_key_file)}")
    lines += ["", "[anchoring]", f"period_s = {period_s}", f"close_delay_s = {2 * segment_seconds + 4}"]
    for cam in cameras:
        lines += [
            "",
            "[[cameras]]",
            f"factory = {_toml_str(cam.factory)}",
            f"device = {_toml_str(cam.device)}",
            f"rtsp_url = {_toml_str(cam.rtsp_url)}",
            f"segment_seconds = {segment_seconds}",
            f"replication_min = {replication[0]}",
            f"replication_max = {replication[1]}",
            "retention_days = 7",
        ]
        if cam.encrypt:
            lines += ["encrypt = true", f"key_rotation_segments = {cam.key_rotation_segments}"]
    return "\n".join(lines) + "\n"


def mirror_config(
    *,
    producers: Sequence[str],
    kubo_api: str,
    catalog: str,
    topic: str,
    store_dir: str,
    admin_port: int,
    catchup_interval_s: float = 10.0,
    host: str = LOOPBACK,
) -> str:
    """A devnet mirror's TOML config (same format as docs/mirror.example.toml)."""
    lines = [
        "# Written by `camswarm devnet up`; edits are replaced at the next start.",
        "producers = [" + ", ".join(_toml_str(p) for p in producers) + "]",
        "",
        "[node]",
        f"kubo_api = {_toml_str(kubo_api)}",
        f"catalog = {_toml_str(catalog)}",
        f"topic = {_toml_str(topic)}",
        f"store_dir = {_toml_str(store_dir)}",
        f'admin_listen = "{host}:{admin_port}"',
        "retention_days = 7",
        f"catchup_interval_s = {catchup_interval_s:g}",
        "fault_injection = true  # a test network: tests drop announcements on purpose",
    ]
    return "\n".join(lines) + "\n"


def gateway_config(
    *,
    listen_port: int,
    store_dir: str,
    kubo_gateway: str,
    catalog: str,
    users_file: str,
    secret_file: str,
    master_key_file: str = "",
    host: str = LOOPBACK,
) -> str:
    """A devnet gateway's TOML config (same format as docs/gateway.example.toml)."""
    lines = [
        "# Written by `camswarm devnet up`; edits are replaced at the next start.",
        "[node]",
        f'listen = "{host}:{listen_port}"',
        f"store_dir = {_toml_str(store_dir)}",
        f"kubo_gateway = {_toml_str(kubo_gateway)}",
        f"catalog = {_toml_str(catalog)}",
        f"users_file = {_toml_str(users_file)}",
        f"secret_file = {_toml_str(secret_file)}",
    ]
    if master_key_file:
        lines.append(f"master_key_file = {_toml_str(master_key_file)}")
    return "\n".join(lines) + "\n"


def anchor_config(
    *,
    catalog: str,
    rpc_url: str,
    contract: str,
    key_file: str,
    period_s: int,
    kubo_api: str,
    admin_port: int,
    host: str = LOOPBACK,
) -> str:
    """The devnet's `camswarm anchor` / `camswarm verify` config (docs/anchor.example.toml)."""
    lines = [
        "# Written by `camswarm devnet up`; edits are replaced at the next start.",
        "[anchor]",
        f"catalog = {_toml_str(catalog)}",
        f"rpc_url = {_toml_str(rpc_url)}",
        f"contract = {_toml_str(contract)}",
        f"key_file = {_toml_str(key_file)}",
        f"period_s = {period_s}",
        f"kubo_api = {_toml_str(kubo_api)}",
        "poll_s = 1",
        "index_interval_s = 2",
        "receipt_timeout_s = 30",
        f'admin_listen = "{host}:{admin_port}"',
    ]
    return "\n".join(lines) + "\n"
