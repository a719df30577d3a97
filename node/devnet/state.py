"""The devnet's plan (ports, identities, cameras) and running processes, kept in DIR.

Everything another shell needs to find or stop the devnet is in
``DIR/devnet.json``; it is written atomically after every change.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.files import write_atomic

STATE_FILE = "devnet.json"
STATE_VERSION = 1
TOPIC = "camswarm/segments/v1"
GATEWAYS = ("gateway1", "gateway2")  # a devnet with mirrors runs both behind one nginx
NGINX = "nginx"
# Hosts besides the nodes (producer, mirrorN) when each host has a network namespace (--netns).
CATALOG_HOST = "catalog"
CHAIN_HOST = "chain"  # anvil and `camswarm anchor`
FRONT = "front"  # nginx and the gateways


@dataclass
class NetnsPlan:
    """A devnet's private network: one namespace per host on one bridge (node/devnet/netns.py)."""

    id: str  # a few hex digits naming the bridge, namespaces and taps of this devnet
    subnet: str  # the /24 prefix, e.g. "10.77.5"
    hosts: dict[str, str]  # host -> its address in the subnet
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> fault (netns.Fault)
    generation: int = 0  # bumped at every change of the links' settings


@dataclass
class NodePorts:
    api: int
    gateway: int
    swarm: int
    cluster: int
    cluster_api: int


LOOPBACK = "127.0.0.1"


@dataclass
class NodeSpec:
    name: str
    ports: NodePorts
    peer_id: str = ""
    cluster_peer_id: str = ""
    address: str = LOOPBACK  # its host's address: loopback, or its network namespace's

    @property
    def kubo_api(self) -> str:
        return f"http://{self.address}:{self.ports.api}"

    @property
    def kubo_gateway(self) -> str:
        return f"http://{self.address}:{self.ports.gateway}"

    @property
    def cluster_api(self) -> str:
        return f"http://{self.address}:{self.ports.cluster_api}"


@dataclass
class CameraSpec:
    factory: str
    device: str
    port: int
    address: str = LOOPBACK  # cameras sit on the producer's host

    @property
    def rtsp(self) -> str:
        return f"rtsp://{self.address}:{self.port}/{self.device}"

    @property
    def process(self) -> str:
        return f"camera-{self.device}"


@dataclass
class ProcessRecord:
    pid: int
    executable: str
    log: str


DEFAULT_ENCRYPTED = ("cam1",)
KEY_ROTATION_SEGMENTS = 10  # the devnet rotates keys often so every run sees a rotation


@dataclass
class DevnetState:
    nodes: list[NodeSpec]
    cameras: list[CameraSpec]
    catalog_port: int
    cluster_secret: str
    topic: str = TOPIC
    admin_port: int = 0  # the devnet producer's /healthz and /metrics (0: not yet chosen)
    mirror_admin_ports: dict[str, int] = field(default_factory=dict)  # mirror node -> admin port
    gateway_ports: dict[str, int] = field(default_factory=dict)  # gateway process -> its listen port
    nginx_port: int = 0  # the front door (0: not yet chosen)
    segment_seconds: int = 2  # the devnet producer's segment length
    period_s: int = 60  # the producer's anchoring period (1 min: anchors show within minutes)
    chain_port: int = 0  # the local Ethereum node, anvil (0: not yet chosen)
    contract: str = ""  # the FootageRegistry deployed on it ("": not yet deployed)
    anchor_admin_port: int = 0  # `camswarm anchor`'s /healthz
    # Devices the producer encrypts (HLS AES-128, master key DIR/master.key); the demo encrypts cam1.
    encrypted: list[str] = field(default_factory=lambda: list(DEFAULT_ENCRYPTED))
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    # With --netns: the network (node/devnet/netns.py); hosts maps each host to its address.
    netns: NetnsPlan | None = None
    version: int = STATE_VERSION

    def addr(self, host: str) -> str:
        """The address of ``host`` (a name from :data:`HOSTS` or a node name); loopback without netns."""
        return self.netns.hosts[host] if self.netns is not None else LOOPBACK

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def producer_admin(self) -> str:
        return f"http://{self.addr('producer')}:{self.admin_port}"

    @property
    def mirrors(self) -> list[str]:
        """The mirror nodes' names; each is also the name of its mirror process."""
        return [n.name for n in self.nodes if n.name.startswith("mirror")]

    @property
    def gateways(self) -> list[str]:
        """The gateway processes' names: none without a mirror store to serve from."""
        return list(GATEWAYS) if self.mirrors else []

    def gateway_store_node(self, gateway: str) -> str:
        """The mirror whose store ``gateway`` serves: gatewayK beside mirrorK, or mirror1."""
        index = self.gateways.index(gateway)
        mirrors = self.mirrors
        return mirrors[index] if index < len(mirrors) else mirrors[0]

    def gateway_listen(self, gateway: str) -> str:
        return f"{self.addr(FRONT)}:{self.gateway_ports[gateway]}"

    @property
    def chain_url(self) -> str:
        return f"http://{self.addr(CHAIN_HOST)}:{self.chain_port}"

    @property
    def anchor_admin(self) -> str:
        return f"http://{self.addr(CHAIN_HOST)}:{self.anchor_admin_port}"

    @property
    def catalog_url(self) -> str:
        return f"mongodb://{self.addr(CATALOG_HOST)}:{self.catalog_port}/"

    @property
    def web_url(self) -> str:
        return f"http://{self.addr(FRONT)}:{self.nginx_port}/"

    def used_ports(self) -> set[int]:
        ports = {self.catalog_port, self.admin_port, self.nginx_port, *self.mirror_admin_ports.values()}
        ports |= {self.chain_port, self.anchor_admin_port}
        ports |= set(self.gateway_ports.values())
        for node in self.nodes:
            ports |= set(asdict(node.ports).values())
        return (ports | {c.port for c in self.cameras}) - {0}  # 0: a port not chosen yet

    def mirror_admin(self, name: str) -> str:
        return f"http://{self.addr(name)}:{self.mirror_admin_ports[name]}"

    def camera(self, device: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.device == device:
                return cam
        known = ", ".join(c.device for c in self.cameras)
        raise KeyError(f"no camera {device!r} in this devnet (cameras: {known})")

    @property
    def mirror_count(self) -> int:
        return sum(1 for n in self.nodes if n.name.startswith("mirror"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DevnetState:
        if obj.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported devnet state version {obj.get('version')!r}")
        return cls(
            nodes=[
                NodeSpec(
                    name=n["name"],
                    ports=NodePorts(**n["ports"]),
                    peer_id=n.get("peer_id", ""),
                    cluster_peer_id=n.get("cluster_peer_id", ""),
                    address=n.get("address", LOOPBACK),
                )
                for n in obj["nodes"]
            ],
            cameras=[CameraSpec(**c) for c in obj["cameras"]],
            catalog_port=int(obj["catalog_port"]),
            cluster_secret=str(obj["cluster_secret"]),
            topic=str(obj.get("topic", TOPIC)),
            admin_port=int(obj.get("admin_port", 0)),
            mirror_admin_ports={str(k): int(v) for k, v in obj.get("mirror_admin_ports", {}).items()},
            gateway_ports={str(k): int(v) for k, v in obj.get("gateway_ports", {}).items()},
            nginx_port=int(obj.get("nginx_port", 0)),
            segment_seconds=int(obj.get("segment_seconds", 2)),
            period_s=int(obj.get("period_s", 60)),
            chain_port=int(obj.get("chain_port", 0)),
            contract=str(obj.get("contract", "")),
            anchor_admin_port=int(obj.get("anchor_admin_port", 0)),
            encrypted=[str(d) for d in obj.get("encrypted", DEFAULT_ENCRYPTED)],
            processes={k: ProcessRecord(**v) for k, v in obj.get("processes", {}).items()},
            netns=NetnsPlan(**obj["netns"]) if obj.get("netns") else None,
        )


def load_state(directory: Path) -> DevnetState | None:
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        return DevnetState.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a valid devnet state file: {exc}") from exc


def save_state(directory: Path, state: DevnetState) -> None:
    # The state holds the cluster secret.
    write_atomic(directory / STATE_FILE, json.dumps(state.to_json(), indent=2) + "\n", private=True)


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """Distinct loopback TCP ports that are free right now."""
    chosen: list[int] = []
    avoid = set(taken or ())
    sockets = []
    try:
        while len(chosen) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)  # held open so the kernel does not hand the same port out twice
            port = sock.getsockname()[1]
            if port not in avoid:
                chosen.append(port)
                avoid.add(port)
    finally:
        for sock in sockets:
            sock.close()
    return chosen


def node_names(mirrors: int) -> list[str]:
    return ["producer"] + [f"mirror{i}" for i in range(1, mirrors + 1)]


def camera_specs(count: int, ports: list[int]) -> list[CameraSpec]:
    """Cameras alternate between two factories so per-factory access can be shown."""
    return [
        CameraSpec(factory=f"factory{(k - 1) % 2 + 1}", device=f"cam{k}", port=ports[k - 1])
        for k in range(1, count + 1)
    ]
