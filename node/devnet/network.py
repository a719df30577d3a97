"""``camswarm devnet``: a whole private camswarm network on loopback, from real daemons.

One Kubo node and one ipfs-cluster peer per role (producer, mirror1..N), the
FerretDB catalog and M simulated RTSP cameras, on free ports picked at the
first ``up``; with at least one mirror, two gateways behind one nginx and two
demo users. Identities and ports are kept in DIR, so ``up`` after ``down``
brings the same network back with its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from node import toolchain
from node.devnet import netns, probes
from node.devnet.configs import (
    PeerAddr,
    ProducerCamera,
    anchor_config,
    cluster_private_config,
    gateway_config,
    kubo_private_config,
    mirror_config,
    new_cluster_secret,
    new_swarm_key,
    producer_config,
    tcp,
)
from node.devnet.state import (
    CATALOG_HOST,
    CHAIN_HOST,
    FRONT,
    KEY_ROTATION_SEGMENTS,
    NGINX,
    CameraSpec,
    DevnetState,
    NetnsPlan,
    NodePorts,
    NodeSpec,
    ProcessRecord,
    camera_specs,
    free_ports,
    load_state,
    node_names,
    save_state,
)
from node.errors import DaemonHTTPError
from node.files import write_atomic
from node.keys import create_master_key
from node.kubo import KuboClient
from node.logs import kv
from node.procs import (
    ConditionTimeout,
    group_alive,
    kill_group,
    pid_matches,
    pids_mentioning,
    poll_until,
    run_checked,
    spawn,
    stop_group,
    tail,
)

log = logging.getLogger("camswarm.devnet")

Progress = Callable[[str], None]
READY_TIMEOUT = 90.0
CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PRODUCER = "producer"
CHAIN = "chain"  # anvil, the local Ethereum node
ANCHOR = "anchor"  # `camswarm anchor`
LINKS = "links"  # linkd, which carries (and impairs) every host's link with --netns


class DevnetError(RuntimeError):
    """The devnet cannot do what was asked; the message says why and what to do."""


def _quiet(_: str) -> None:
    pass


# --- layout -------------------------------------------------------------------------


def kubo_repo(directory: Path, node: str) -> Path:
    return directory / "nodes" / node / "kubo"


def cluster_dir(directory: Path, node: str) -> Path:
    return directory / "nodes" / node / "cluster"


def log_path(directory: Path, process: str) -> Path:
    return directory / "logs" / f"{process}.log"


def kubo_env(directory: Path, node: str) -> dict[str, str]:
    return {"IPFS_PATH": str(kubo_repo(directory, node)), "LIBP2P_FORCE_PNET": "1", "IPFS_TELEMETRY": "off"}


# --- first-time initialisation -----------------------------------------------------------


async def _run(argv: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    return await run_checked(argv, what=what, env=env, unset_prefixes=CLUSTER_ENV_PREFIXES, error=DevnetError)


_PORTS_PER_NODE = 5  # Kubo API, gateway, swarm; cluster swarm, cluster REST API


def _new_plan(mirrors: int, cameras: int, network: NetnsPlan | None = None) -> DevnetState:
    names = node_names(mirrors)
    ports = free_ports(_PORTS_PER_NODE * len(names) + 2 + cameras)
    nodes = []
    for i, name in enumerate(names):
        p = ports[_PORTS_PER_NODE * i : _PORTS_PER_NODE * (i + 1)]
        nodes.append(NodeSpec(name=name, ports=NodePorts(*p)))
    catalog_port = ports[_PORTS_PER_NODE * len(names)]
    admin_port = ports[_PORTS_PER_NODE * len(names) + 1]
    cams = camera_specs(cameras, ports[_PORTS_PER_NODE * len(names) + 2 :])
    if network is not None:
        for node in nodes:
            node.address = network.hosts[node.name]
        for cam in cams:
            cam.address = network.hosts[PRODUCER]
    return DevnetState(
        nodes=nodes,
        cameras=cams,
        catalog_port=catalog_port,
        cluster_secret=new_cluster_secret(),
        admin_port=admin_port,
        netns=network,
    )


async def _init_kubo(directory: Path, state: DevnetState, ipfs: Path) -> None:
    swarm_key = new_swarm_key()
    write_atomic(directory / "swarm.key", swarm_key, private=True)

    configs: dict[str, dict[str, Any]] = {}

    async def init_one(node: NodeSpec) -> None:
        repo = kubo_repo(directory, node.name)
        repo.parent.mkdir(parents=True, exist_ok=True)
        await _run(
            [str(ipfs), "init", "--profile", "test"],
            env=kubo_env(directory, node.name),
            what=f"ipfs init ({node.name})",
        )
        configs[node.name] = json.loads((repo / "config").read_text())
        node.peer_id = str(configs[node.name]["Identity"]["PeerID"])
        write_atomic(repo / "swarm.key", swarm_key, private=True)

    # Every node's config names every other node's peer ID, so all must exist first.
    await asyncio.gather(*(init_one(n) for n in state.nodes))
    for node in state.nodes:
        repo = kubo_repo(directory, node.name)
        peers = [PeerAddr(o.peer_id, tcp(o.address, o.ports.swarm)) for o in state.nodes if o is not node]
        new = kubo_private_config(
            configs[node.name],
            api_port=node.ports.api,
            gateway_port=node.ports.gateway,
            swarm_port=node.ports.swarm,
            peers=peers,
            address=node.address,
        )
        (repo / "config").write_text(json.dumps(new, indent=2))


async def _init_cluster(directory: Path, state: DevnetState, service: Path) -> None:
    async def init_one(node: NodeSpec) -> None:
        cdir = cluster_dir(directory, node.name)
        cdir.parent.mkdir(parents=True, exist_ok=True)
        await _run(
            [str(service), "--config", str(cdir), "init", "--consensus", "crdt", "--force"],
            env={"CLUSTER_SECRET": state.cluster_secret},
            what=f"ipfs-cluster-service init ({node.name})",
        )
        node.cluster_peer_id = str(json.loads((cdir / "identity.json").read_text())["id"])

    await asyncio.gather(*(init_one(n) for n in state.nodes))
    trusted = [n.cluster_peer_id for n in state.nodes]
    for node in state.nodes:
        cdir = cluster_dir(directory, node.name)
        config = json.loads((cdir / "service.json").read_text())
        new = cluster_private_config(
            config,
            peername=node.name,
            secret=state.cluster_secret,
            cluster_port=node.ports.cluster,
            api_port=node.ports.cluster_api,
            kubo_api_port=node.ports.api,
            trusted_peers=trusted,
            address=node.address,
        )
        (cdir / "service.json").write_text(json.dumps(new, indent=2))
        others = [
            tcp(o.address, o.ports.cluster) + f"/p2p/{o.cluster_peer_id}"
            for o in state.nodes
            if o is not node
        ]
        (cdir / "peerstore").write_text("".join(a + "\n" for a in others))


# --- processes --------------------------------------------------------------------------


# ipfs-cluster lets CLUSTER_* variables override service.json; a stray one in the
# caller's shell must not change the devnet.
CLUSTER_ENV_PREFIXES = ("CLUSTER_", "IPFS_CLUSTER_")


def _start(
    directory: Path,
    state: DevnetState,
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    executable: str | None = None,
) -> None:
    """Spawn a daemon and record it; ``executable`` (default argv[0]) guards against pid reuse.

    With --netns it runs inside its host's namespace (``ip netns exec`` execs it: the pid is
    the daemon's).
    """
    log_file = log_path(directory, name)
    command = list(argv)
    host = netns.host_of(name, state.mirrors, state.gateways) if state.netns is not None else None
    if state.netns is not None and host is not None:
        command = [*netns.exec_prefix(state.netns, host), *argv]
    pid = spawn(command, log_path=log_file, env=env, unset_prefixes=unset)
    state.processes[name] = ProcessRecord(pid=pid, executable=executable or argv[0], log=str(log_file))
    save_state(directory, state)
    log.info("process_started", extra=kv(process=name, pid=pid))


def process_alive(record: ProcessRecord) -> bool:
    return group_alive(record.pid) and pid_matches(record.pid, record.executable)


def _start_camera(directory: Path, state: DevnetState, cam: CameraSpec) -> None:
    _start(
        directory,
        state,
        cam.process,
        [
            SYSTEM_PYTHON,
            str(CAMERA_SCRIPT),
            "--port",
            str(cam.port),
            "--path",
            cam.device,
            "--label",
            f"{cam.factory}/{cam.device}",
            "--address",
            cam.address,
        ],
        executable=str(CAMERA_SCRIPT),  # argv[0] is the shared system Python
    )


def producer_config_path(directory: Path) -> Path:
    return directory / "producer.toml"


def producer_state_dir(directory: Path) -> Path:
    return directory / "nodes" / "producer" / "recorder"


def mirror_config_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.toml"


def mirror_store_dir(directory: Path, name: str) -> Path:
    return directory / "nodes" / name / "store"


def _producer_key_id(directory: Path) -> str:
    """The devnet producer's key id (the key is created now if the producer has not run yet)."""
    from node import announce, keys  # the devnet's producer key lives where the producer expects it

    key, _ = keys.load_or_create(producer_state_dir(directory) / "producer.key")
    return announce.key_id(key.public_key())


def _start_mirror(directory: Path, state: DevnetState, name: str) -> None:
    if name not in state.mirror_admin_ports:
        state.mirror_admin_ports[name] = free_ports(1, state.used_ports())[0]
    text = mirror_config(
        producers=[_producer_key_id(directory)],
        kubo_api=state.node(name).kubo_api,
        catalog=state.catalog_url,
        topic=state.topic,
        store_dir=str(mirror_store_dir(directory, name)),
        admin_port=state.mirror_admin_ports[name],
        host=state.addr(name),
    )
    path = mirror_config_path(directory, name)
    write_atomic(path, text, private=True)
    argv = [sys.executable, "-m", "node.cli", "mirror", "--config", str(path)]
    _start(directory, state, name, argv, executable="node.cli")


def master_key_path(directory: Path) -> Path:
    return directory / "master.key"


def _master_key(directory: Path) -> Path:
    """The segment-key master key, created once (0600) and given to the producer and the gateways."""
    path = master_key_path(directory)
    create_master_key(path)
    return path


def _start_producer(directory: Path, state: DevnetState) -> None:
    node = state.node("producer")
    peers = len(state.nodes)
    text = producer_config(
        kubo_api=node.kubo_api,
        cluster_api=node.cluster_api,
        catalog=state.catalog_url,
        topic=state.topic,
        state_dir=str(producer_state_dir(directory)),
        admin_port=state.admin_port,
        cameras=[
            ProducerCamera(c.factory, c.device, c.rtsp, c.device in state.encrypted, KEY_ROTATION_SEGMENTS)
            for c in state.cameras
        ],
        segment_seconds=state.segment_seconds,
        replication=(min(2, peers), peers),
        period_s=state.period_s,
        master_key_file=str(_master_key(directory)) if state.encrypted else "",
        host=state.addr(PRODUCER),
    )
    write_atomic(producer_config_path(directory), text, private=True)
    argv = [sys.executable, "-m", "node.cli", "producer", "--config", str(producer_config_path(directory))]
    _start(directory, state, PRODUCER, argv, executable="node.cli")


# --- the hosts' links (--netns): linkd and faults ------------------------------------------


def links_settings_path(directory: Path) -> Path:
    return directory / "links" / "settings.json"


def links_status_path(directory: Path) -> Path:
    return directory / "links" / "status.json"


def _write_links_settings(directory: Path, state: DevnetState) -> int:
    """Write linkd's settings for the current faults under a new generation; return it."""
    from node.devnet.linkd import write_settings

    assert state.netns is not None
    state.netns.generation += 1
    faults = {h: netns.Fault(**f) for h, f in state.netns.faults.items()}
    links_settings_path(directory).parent.mkdir(mode=0o700, exist_ok=True)
    write_settings(
        links_settings_path(directory), state.netns.generation, netns.link_settings(state.netns, faults)
    )
    save_state(directory, state)
    return state.netns.generation


def _start_links(directory: Path, state: DevnetState) -> None:
    _write_links_settings(directory, state)
    argv = [
        sys.executable,
        "-m",
        "node.devnet.linkd",
        "--settings",
        str(links_settings_path(directory)),
        "--status",
        str(links_status_path(directory)),
    ]
    _start(directory, state, LINKS, argv, executable="node.devnet.linkd")


async def _links_applied(directory: Path, state: DevnetState) -> None:
    from node.devnet.linkd import wait_applied

    assert state.netns is not None
    record = state.processes[LINKS]
    try:
        await wait_applied(
            links_status_path(directory), state.netns.generation, timeout=READY_TIMEOUT, pid=record.pid
        )
    except (TimeoutError, RuntimeError) as exc:
        raise DevnetError(f"{exc}{_log_detail(directory, LINKS)}") from exc


async def fault(directory: Path, host: str, new: netns.Fault) -> netns.Fault:
    """Set ``host``'s link to ``new`` (netns.Fault() heals it); returns once linkd applies it.

    Returns the fault the link had before.
    """
    directory = directory.resolve()
    state = _require_state(directory)
    if state.netns is None:
        raise DevnetError(f"the devnet in {directory} runs on loopback; faults need `devnet up --netns`")
    if host not in state.netns.hosts:
        raise DevnetError(f"no host {host!r} in this devnet (hosts: {', '.join(state.netns.hosts)})")
    record = state.processes.get(LINKS)
    if record is None or not process_alive(record):
        raise DevnetError("linkd is not running; start the devnet first")
    before = netns.Fault(**state.netns.faults.get(host, {}))
    if new.healthy:
        state.netns.faults.pop(host, None)
    else:
        state.netns.faults[host] = {"down": new.down, "delay_ms": new.delay_ms, "loss_pct": new.loss_pct}
    _write_links_settings(directory, state)
    os.kill(record.pid, signal.SIGHUP)
    await _links_applied(directory, state)
    log.info("link_fault", extra=kv(host=host, fault=new.describe(), before=before.describe()))
    return before


# --- the chain: anvil, the FootageRegistry, `camswarm anchor` --------------------------------


def anchor_config_path(directory: Path) -> Path:
    return directory / "anchor.toml"


def anchor_key_path(directory: Path) -> Path:
    return directory / "anchor.key"


def _start_chain(directory: Path, state: DevnetState) -> None:
    from node.chain import anvil_argv, anvil_binary

    if state.chain_port == 0:
        state.chain_port = free_ports(1, state.used_ports())[0]
    chain_dir = directory / "chain"
    chain_dir.mkdir(mode=0o700, exist_ok=True)
    # The chain's state is dumped every second and on exit, and loaded at start: a restarted
    # devnet keeps its contract and anchors.
    argv = anvil_argv(anvil_binary(), state.chain_port, host=state.addr(CHAIN_HOST))
    argv += ["--state", str(chain_dir / "state.json")]
    _start(directory, state, CHAIN, [*argv, "--state-interval", "1"])


async def _ensure_contract(directory: Path, state: DevnetState, progress: Progress) -> None:
    """Deploy the FootageRegistry unless the chain already holds it; write the anchor key and config."""
    from node.chain import ANVIL_DEV_KEYS, deploy_registry

    key = ANVIL_DEV_KEYS[0]  # anvil's first funded account: local chains only
    if not state.contract or not await probes.contract_deployed(state.chain_url, state.contract):
        progress("deploying the FootageRegistry contract")
        state.contract = await deploy_registry(state.chain_url, key)
        save_state(directory, state)
    write_atomic(anchor_key_path(directory), key + "\n", private=True)
    if state.anchor_admin_port == 0:
        state.anchor_admin_port = free_ports(1, state.used_ports())[0]
    text = anchor_config(
        catalog=state.catalog_url,
        rpc_url=state.chain_url,
        contract=state.contract,
        key_file=str(anchor_key_path(directory)),
        period_s=state.period_s,
        kubo_api=state.node(state.mirrors[0] if state.mirrors else PRODUCER).kubo_api,
        admin_port=state.anchor_admin_port,
        host=state.addr(CHAIN_HOST),
    )
    write_atomic(anchor_config_path(directory), text, private=True)


def _start_anchor(directory: Path, state: DevnetState) -> None:
    argv = [sys.executable, "-m", "node.cli", "anchor", "--config", str(anchor_config_path(directory))]
    _start(directory, state, ANCHOR, argv, executable="node.cli")


# --- the web front: gateways, nginx, demo users -------------------------------------------

# Created at the first `up`; the client sees factory1's cameras, the admin every camera.
DEMO_USERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("demo-client", "client", ("factory1",)),
    ("demo-admin", "admin", ()),
)


def gateway_config_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.toml"


def users_path(directory: Path) -> Path:
    return directory / "users.json"


def credentials_path(directory: Path) -> Path:
    return directory / "credentials.json"


def link_secret_path(directory: Path) -> Path:
    return directory / "link.secret"


def nginx_dir(directory: Path) -> Path:
    return directory / "nginx"


def nginx_binary() -> Path:
    """nginx from PATH or Debian's /usr/sbin (not on a normal user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        raise toolchain.ToolMissing("nginx not found; run `make deps` (installs Debian package nginx)")
    return Path(found)


def _plan_front(state: DevnetState) -> None:
    """Pick the gateways' and nginx's ports once (state files of older devnets have none)."""
    missing = [g for g in state.gateways if g not in state.gateway_ports]
    need_nginx = bool(state.gateways) and state.nginx_port == 0
    ports = free_ports(len(missing) + int(need_nginx), state.used_ports())
    for name, port in zip(missing, ports, strict=False):
        state.gateway_ports[name] = port
    if need_nginx:
        state.nginx_port = ports[-1]


def read_credentials(path: Path) -> dict[str, str]:
    """username -> password of the demo users; {} when the file is missing or not ours."""
    try:
        doc = json.loads(path.read_text())
        return {str(name): str(user["password"]) for name, user in doc["users"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _ensure_demo_users(directory: Path) -> None:
    """Create the demo users when DIR has no users file yet; their passwords go to credentials.json.

    A users file that exists is left as it is (its users may have been changed on purpose).
    """
    from gateway.users import UserStore  # the devnet runs the gateway role; nothing else needs it

    users = users_path(directory)
    if users.exists():
        return
    known = read_credentials(credentials_path(directory))
    passwords = {name: known.get(name) or secrets.token_urlsafe(12) for name, _, _ in DEMO_USERS}
    doc = {
        "users": {
            name: {"password": passwords[name], "role": role, "factories": list(factories)}
            for name, role, factories in DEMO_USERS
        }
    }
    # Written before the users file: a crash in between still leaves the passwords on record.
    write_atomic(credentials_path(directory), json.dumps(doc, indent=2) + "\n", private=True)
    store = UserStore(users)
    for name, role, factories in DEMO_USERS:
        store.add(name, passwords[name], role, factories)
    log.info("demo_users_created", extra=kv(users_file=str(users), users=len(DEMO_USERS)))


def _link_secret(directory: Path) -> str:
    from gateway.app import load_or_create_secret  # shared by the gateways and nginx

    return load_or_create_secret(link_secret_path(directory))


def _start_gateway(directory: Path, state: DevnetState, name: str) -> None:
    _plan_front(state)
    _link_secret(directory)  # made before either gateway starts, so both read the same one
    store_node = state.gateway_store_node(name)
    text = gateway_config(
        listen_port=state.gateway_ports[name],
        store_dir=str(mirror_store_dir(directory, store_node)),
        kubo_gateway=state.node(store_node).kubo_gateway,
        catalog=state.catalog_url,
        users_file=str(users_path(directory)),
        secret_file=str(link_secret_path(directory)),
        master_key_file=str(_master_key(directory)),  # gateways hand keys to viewers; mirrors never
        host=state.addr(FRONT),
    )
    path = gateway_config_path(directory, name)
    write_atomic(path, text, private=True)
    argv = [sys.executable, "-m", "node.cli", "gateway", "--config", str(path)]
    _start(directory, state, name, argv, executable="node.cli")


def _start_nginx(directory: Path, state: DevnetState) -> None:
    from gateway import nginx_conf

    _plan_front(state)
    binary = nginx_binary()
    mirror = state.mirrors[0]
    prefix = nginx_dir(directory)
    text = nginx_conf.render(
        listen=f"{state.addr(FRONT)}:{state.nginx_port}",
        state_dir=prefix,
        media_root=mirror_store_dir(directory, mirror),
        kubo_gateway=state.node(mirror).kubo_gateway,
        gateways=[state.gateway_listen(g) for g in state.gateways],
        link_secret=_link_secret(directory),
        # A master started as root would run its workers as "nobody", who cannot read DIR (0700).
        worker_user=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
    )
    conf = prefix / "nginx.conf"
    nginx_conf.write_config(conf, text, state_dir=prefix)
    # The template says "daemon off;": the master stays in the foreground, its own process group
    # leader, so stopping the group stops the workers too. -e: nginx opens its error log before
    # reading the config, and the compiled-in /var/log/nginx may not be writable.
    argv = [str(binary), "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "logs" / "error.log")]
    _start(directory, state, NGINX, argv)


async def _wait(
    check: Callable[[], Awaitable[bool]], what: str, directory: Path, process: str | None
) -> None:
    try:
        await poll_until(check, timeout=READY_TIMEOUT, what=what, interval=0.2)
    except ConditionTimeout as exc:
        raise DevnetError(f"{exc}{_log_detail(directory, process) if process else ''}") from exc


def _log_detail(directory: Path, process: str) -> str:
    """The end of ``process``'s log, to append to an error about it."""
    path = log_path(directory, process)
    return f"\n--- last lines of {path} ---\n{tail(path)}"


async def _swarm_complete(state: DevnetState) -> bool:
    """Whether every Kubo node sees every other; dials the pairs still missing.

    Peering dials the same pairs on its own, and two dials crossing on one TCP pair can fail
    the security handshake ("unexpected handshake message"): a failed dial is tried again at
    the next poll instead of failing the start.
    """
    complete = True
    for node in state.nodes:
        async with KuboClient(node.kubo_api, timeout=10) as kubo:
            connected = {p.peer for p in await kubo.swarm_peers()}
            for other in state.nodes:
                if other is not node and other.peer_id not in connected:
                    complete = False
                    address = PeerAddr(other.peer_id, tcp(other.address, other.ports.swarm)).full
                    with contextlib.suppress(DaemonHTTPError):
                        await kubo.swarm_connect(address)
    return complete


def _check_tools() -> toolchain.ToolPaths:
    paths = toolchain.tool_paths()
    for path in (paths.ipfs, paths.cluster_service, paths.ferretdb):
        toolchain.require(path)
    if not Path(SYSTEM_PYTHON).exists():
        raise toolchain.ToolMissing(f"{SYSTEM_PYTHON} not found; run `make deps` (Debian python3-gi)")
    toolchain.require_system("ffmpeg", "ffmpeg")
    return paths


async def up(
    directory: Path,
    *,
    mirrors: int = 2,
    cameras: int = 2,
    producer: bool = True,
    segment_seconds: int | None = None,
    period_s: int | None = None,
    encrypted: Sequence[str] | None = None,
    netns_hosts: bool = False,
    progress: Progress = _quiet,
) -> DevnetState:
    """Start (or restart) the devnet in ``directory``; return once every service answers.

    ``netns_hosts`` puts every host in a network namespace of its own (node/devnet/netns.py);
    it is chosen when the devnet is created and kept.

    ``segment_seconds`` sets the producer's segment length (kept in the state, so a restarted
    producer keeps it; 2 s for a new devnet when not given). ``encrypted`` names the devices
    the producer encrypts (kept in the state likewise; cam1 for a new devnet when not given).
    """
    if mirrors < 0 or mirrors > 8:
        raise DevnetError("--mirrors must be between 0 and 8")
    if cameras < 0 or cameras > 16:
        raise DevnetError("--cameras must be between 0 and 16")
    try:
        paths = _check_tools()
        if mirrors:
            nginx_binary()
        if netns_hosts:
            netns.check_support()
    except (toolchain.ToolMissing, netns.NetnsError) as exc:
        raise DevnetError(str(exc)) from exc
    directory = directory.resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    state = load_state(directory)
    if state is not None:
        running = [name for name, rec in state.processes.items() if process_alive(rec)]
        if running:
            raise DevnetError(
                f"a devnet is already running in {directory} ({', '.join(sorted(running))}); "
                f"stop it with `camswarm devnet down --dir {directory}`"
            )
        if state.mirror_count != mirrors or len(state.cameras) != cameras:
            raise DevnetError(
                f"{directory} holds a devnet with {state.mirror_count} mirrors "
                f"and {len(state.cameras)} cameras; "
                "use the same counts or a new --dir"
            )
        if (state.netns is not None) != netns_hosts:
            kind = "network namespaces" if state.netns is not None else "loopback"
            raise DevnetError(
                f"{directory} holds a devnet on {kind}; "
                + ("add --netns" if state.netns is not None else "drop --netns")
                + " or use a new --dir"
            )
        state.processes.clear()
        if state.netns is not None:
            state.netns.faults.clear()  # a restarted devnet starts healthy
        progress(f"restarting the devnet in {directory}")
    else:
        network = None
        if netns_hosts:
            hosts = netns.hosts(node_names(mirrors)[1:], front=mirrors > 0)
            network = netns.new_plan(hosts, await netns.current_subnets())
        state = _new_plan(mirrors, cameras, network)
        progress(f"initialising {len(state.nodes)} Kubo nodes and cluster peers in {directory}")
        await _init_kubo(directory, state, paths.ipfs)
        await _init_cluster(directory, state, paths.cluster_service)
        save_state(directory, state)

    if segment_seconds is not None:
        state.segment_seconds = segment_seconds
    if period_s is not None:
        state.period_s = period_s
    if encrypted is not None:
        state.encrypted = list(encrypted)
    if state.gateways:
        await asyncio.to_thread(_ensure_demo_users, directory)  # argon2 hashing takes a moment
    try:
        if state.admin_port == 0:
            state.admin_port = free_ports(1, state.used_ports())[0]
        _plan_front(state)
        await _start_all(directory, state, paths, progress, producer)
    except BaseException:
        progress("start failed; stopping what was started")
        await _stop_all(directory, state)
        raise
    return state


def _launch(directory: Path, state: DevnetState, paths: toolchain.ToolPaths, name: str) -> None:
    """Spawn the devnet process called ``name`` (see :func:`process_names`)."""
    if name == LINKS and state.netns is not None:
        _start_links(directory, state)
    elif name == "catalog":
        argv = [str(paths.ferretdb), "--listen", f"{state.addr(CATALOG_HOST)}:{state.catalog_port}"]
        _start(directory, state, name, [*argv, "--data-dir", str(directory / "catalog")])
    elif name.startswith("camera-"):
        _start_camera(directory, state, state.camera(name.removeprefix("camera-")))
    elif name.startswith("kubo-"):
        node = state.node(name.removeprefix("kubo-"))
        argv = [str(paths.ipfs), "daemon", "--enable-gc=false"]
        _start(directory, state, name, argv, kubo_env(directory, node.name))
    elif name.startswith("cluster-"):
        cdir = cluster_dir(directory, state.node(name.removeprefix("cluster-")).name)
        argv = [str(paths.cluster_service), "--config", str(cdir), "daemon"]
        _start(directory, state, name, argv, unset=CLUSTER_ENV_PREFIXES)
    elif name == PRODUCER:
        _start_producer(directory, state)
    elif name == CHAIN:
        _start_chain(directory, state)
    elif name == ANCHOR:
        _start_anchor(directory, state)
    elif name in state.mirrors:
        _start_mirror(directory, state, name)
    elif name in state.gateways:
        _start_gateway(directory, state, name)
    elif name == NGINX and state.gateways:
        _start_nginx(directory, state)
    else:
        _require_process(state, name)
        raise AssertionError(f"{name} is in process_names but has no launcher")


def process_names(state: DevnetState) -> list[str]:
    """Every process a devnet can run, in start order."""
    return [
        *([LINKS] if state.netns is not None else []),
        "catalog",
        *(c.process for c in state.cameras),
        *(f"kubo-{n.name}" for n in state.nodes),
        *(f"cluster-{n.name}" for n in state.nodes),
        CHAIN,
        PRODUCER,
        *state.mirrors,
        ANCHOR,
        *state.gateways,
        *([NGINX] if state.gateways else []),
    ]


async def _ready(directory: Path, state: DevnetState, name: str) -> None:
    """Return once the process called ``name`` answers like a healthy one."""
    check: Callable[[], Awaitable[bool]]
    if name == LINKS:
        await _links_applied(directory, state)
        return
    if name == "catalog":
        url = state.catalog_url
        check, what = partial(probes.catalog_ready, url), f"catalog at {url}"
    elif name.startswith("camera-"):
        cam = state.camera(name.removeprefix("camera-"))
        check, what = partial(probes.rtsp_ready, cam.address, cam.port, cam.device), f"camera {cam.rtsp}"
    elif name.startswith("kubo-"):
        node = state.node(name.removeprefix("kubo-"))
        check, what = partial(probes.kubo_ready, node.kubo_api), f"Kubo {node.name} at {node.kubo_api}"
    elif name.startswith("cluster-"):
        node = state.node(name.removeprefix("cluster-"))
        ids = {n.cluster_peer_id for n in state.nodes}
        check = partial(probes.cluster_allocatable, node.cluster_api, ids)
        what = f"cluster peer {node.name} to see {len(ids)} peers and their metrics"
    elif name in state.mirrors:
        url = state.mirror_admin(name) + "/healthz"
        check, what = partial(probes.http_ok, url), f"mirror {name}'s /healthz"
    elif name in state.gateways:
        url = f"http://{state.gateway_listen(name)}/healthz"
        check, what = partial(probes.http_ok, url), f"{name}'s /healthz at {url}"
    elif name == NGINX:
        url = state.web_url + "nginx-health"
        check, what = partial(probes.http_ok, url), f"nginx at {url}"
    elif name == CHAIN:
        check, what = partial(probes.json_rpc_ready, state.chain_url), f"anvil at {state.chain_url}"
    elif name == ANCHOR:
        url = f"{state.anchor_admin}/healthz"
        check, what = partial(probes.http_ok, url), f"the anchor service's /healthz at {url}"
    else:
        check, what = partial(probes.http_ok, state.producer_admin + "/healthz"), "the producer's /healthz"
    await _wait(check, what, directory, name)


async def _start_all(
    directory: Path, state: DevnetState, paths: toolchain.ToolPaths, progress: Progress, producer: bool
) -> None:
    if state.netns is not None:
        progress(
            f"creating {len(state.netns.hosts)} hosts in network namespaces on {state.netns.subnet}.0/24"
        )
        await netns.create(state.netns)
        await _launch_group(directory, state, paths, [LINKS])
    storage = ["catalog", *(c.process for c in state.cameras), *(f"kubo-{n.name}" for n in state.nodes)]
    for name in [*storage, CHAIN]:
        _launch(directory, state, paths, name)
    progress("waiting for Kubo nodes")
    for node in state.nodes:
        await _ready(directory, state, f"kubo-{node.name}")
    await _wait(partial(_swarm_complete, state), "every Kubo node to see every other", directory, None)

    progress("waiting for cluster peers")
    await _launch_group(directory, state, paths, [f"cluster-{n.name}" for n in state.nodes])

    progress("waiting for the catalog, cameras and chain")
    for name in ["catalog", *(c.process for c in state.cameras), CHAIN]:
        await _ready(directory, state, name)
    await _ensure_contract(directory, state, progress)
    if producer and state.cameras:
        progress("starting the producer")
        _launch(directory, state, paths, PRODUCER)
        await _ready(directory, state, PRODUCER)
    if state.mirrors:
        progress(f"starting {len(state.mirrors)} mirrors")
        await _launch_group(directory, state, paths, state.mirrors)
    progress("starting the anchor service")
    await _launch_group(directory, state, paths, [ANCHOR])
    if state.gateways:
        progress(f"starting {len(state.gateways)} gateways and nginx")
        await _launch_group(directory, state, paths, state.gateways)
        await _launch_group(directory, state, paths, [NGINX])
    save_state(directory, state)


async def _launch_group(
    directory: Path, state: DevnetState, paths: toolchain.ToolPaths, names: list[str]
) -> None:
    """Start these processes together, then wait until each answers."""
    for name in names:
        _launch(directory, state, paths, name)
    for name in names:
        await _ready(directory, state, name)


# --- stop -------------------------------------------------------------------------------

# Stop order: the front door first (no new requests reach stopping gateways), then the role
# processes (producer, mirrors, gateways), then what produces data, storage last.
_STOP_ORDER = ("camera-", "cluster-", "kubo-", "chain", "catalog", "links")
_FRONT_RANK, _ROLE_RANK = -2, -1


def _stop_rank(name: str) -> int:
    if name == NGINX:
        return _FRONT_RANK
    for rank, prefix in enumerate(_STOP_ORDER):
        if name.startswith(prefix):
            return rank
    return _ROLE_RANK


async def _stop_all(directory: Path, state: DevnetState) -> dict[str, str]:
    results: dict[str, str] = {}
    for rank in range(_FRONT_RANK, len(_STOP_ORDER)):
        names = [n for n in state.processes if _stop_rank(n) == rank]
        outcomes = await asyncio.gather(*(_stop_one(state, n) for n in names))
        results.update(zip(names, outcomes, strict=True))
    state.processes.clear()
    save_state(directory, state)
    return results


async def _stop_one(state: DevnetState, name: str, term_timeout: float = 15.0) -> str:
    record = state.processes.get(name)
    if record is None or not pid_matches(record.pid, record.executable):
        return "gone"
    outcome = await stop_group(record.pid, name=name, term_timeout=term_timeout)
    log.info("process_stopped", extra=kv(process=name, pid=record.pid, outcome=outcome))
    return outcome


async def down(directory: Path) -> dict[str, str]:
    """Stop every process the devnet in ``directory`` started; data stays for the next ``up``.

    That includes an ffmpeg left recording by a producer that was killed: it leads a
    process group of its own, outside the producer's, so it is found by its arguments.
    """
    directory = directory.resolve()
    state = _require_state(directory)
    results = await _stop_all(directory, state)
    for pid in pids_mentioning(directory, executable="ffmpeg"):
        results[f"ffmpeg-{pid}"] = await stop_group(pid, name=f"orphaned ffmpeg {pid}", term_timeout=5.0)
    if state.netns is not None:
        for removed in await netns.destroy(state.netns):
            results[removed] = "removed"
    return results


# --- one process: outages on demand ----------------------------------------------------------


async def stop_process(directory: Path, name: str, term_timeout: float = 15.0) -> str:
    """Stop one devnet process (an outage); the rest keep running."""
    directory = directory.resolve()
    state = _require_state(directory)
    _require_process(state, name)
    outcome = await _stop_one(state, name, term_timeout=term_timeout)
    state.processes.pop(name, None)
    save_state(directory, state)
    return outcome


async def kill_process(directory: Path, name: str) -> str:
    """SIGKILL one devnet process's whole group (a crash: nothing gets to clean up)."""
    directory = directory.resolve()
    state = _require_state(directory)
    _require_process(state, name)
    record = state.processes.pop(name, None)
    save_state(directory, state)
    if record is None or not pid_matches(record.pid, record.executable):
        return "gone"
    outcome = await kill_group(record.pid, name=name)
    log.info("process_killed", extra=kv(process=name, pid=record.pid, outcome=outcome))
    return outcome


def _require_process(state: DevnetState, name: str) -> None:
    if name not in process_names(state):
        raise DevnetError(
            f"no process {name!r} in this devnet (processes: {', '.join(process_names(state))})"
        )


async def start_process(directory: Path, name: str) -> None:
    """Start one stopped devnet process again and wait until it answers."""
    directory = directory.resolve()
    state = _require_state(directory)
    record = state.processes.get(name)
    if record is not None and process_alive(record):
        raise DevnetError(f"{name} is already running")
    try:
        paths = _check_tools()
    except toolchain.ToolMissing as exc:
        raise DevnetError(str(exc)) from exc
    _launch(directory, state, paths, name)
    await _ready(directory, state, name)


def camera_process(directory: Path, device: str) -> str:
    """The process name of the simulated camera ``device`` (for stop_process/start_process)."""
    try:
        return _require_state(directory.resolve()).camera(device).process
    except KeyError as exc:
        raise DevnetError(str(exc.args[0])) from exc


def _require_state(directory: Path) -> DevnetState:
    state = load_state(directory)
    if state is None:
        raise DevnetError(f"no devnet in {directory} (no devnet.json)")
    return state


# --- status -----------------------------------------------------------------------------


def status(directory: Path) -> dict[str, Any]:
    """Every endpoint of the devnet, in the documented shape (see docs/devnet.md)."""
    directory = directory.resolve()
    state = _require_state(directory)
    alive = {name: process_alive(rec) for name, rec in state.processes.items()}
    nodes: dict[str, Any] = {}
    for node in state.nodes:
        nodes[node.name] = {
            "kubo_api": node.kubo_api,
            "kubo_gateway": node.kubo_gateway,
            "peer_id": node.peer_id,
            "swarm": PeerAddr(node.peer_id, tcp(node.address, node.ports.swarm)).full,
            "cluster_api": node.cluster_api,
            "cluster_peer_id": node.cluster_peer_id,
        }
        if node.name == PRODUCER and PRODUCER in state.processes:
            nodes[node.name]["admin"] = state.producer_admin
        if node.name in state.mirror_admin_ports and node.name in state.processes:
            nodes[node.name]["admin"] = state.mirror_admin(node.name)
    return {
        "dir": str(directory),
        "running": any(alive.values()),
        "nodes": nodes,
        "catalog": state.catalog_url,
        "topic": state.topic,
        "chain": {
            "rpc": state.chain_url,
            "contract": state.contract,
            "period_s": state.period_s,
            "anchor_admin": state.anchor_admin,
            "anchor_config": str(anchor_config_path(directory)),
        },
        "producer": {
            "admin": state.producer_admin,
            "config": str(producer_config_path(directory)),
            "state_dir": str(producer_state_dir(directory)),
        },
        "mirrors": {
            name: {
                "admin": state.mirror_admin(name) if name in state.mirror_admin_ports else None,
                "config": str(mirror_config_path(directory, name)),
                "store": str(mirror_store_dir(directory, name)),
            }
            for name in state.mirrors
        },
        "gateways": {
            name: {
                "url": f"http://{state.gateway_listen(name)}" if name in state.gateway_ports else None,
                "config": str(gateway_config_path(directory, name)),
                "store": str(mirror_store_dir(directory, state.gateway_store_node(name))),
            }
            for name in state.gateways
        },
        "web": (
            {"url": state.web_url, "credentials": str(credentials_path(directory))}
            if state.gateways and state.nginx_port
            else None
        ),
        "network": (
            {
                "subnet": f"{state.netns.subnet}.0/24",
                "bridge": netns.bridge(state.netns),
                "hosts": {
                    host: {
                        "address": address,
                        "netns": netns.namespace(state.netns, host),
                        "link": netns.Fault(**state.netns.faults.get(host, {})).describe(),
                    }
                    for host, address in state.netns.hosts.items()
                },
            }
            if state.netns is not None
            else None
        ),
        "swarm_key": str(directory / "swarm.key"),
        "cameras": [
            {"factory": c.factory, "device": c.device, "rtsp": c.rtsp, "running": alive.get(c.process, False)}
            for c in state.cameras
        ],
        "processes": {
            name: {"pid": rec.pid, "alive": alive[name], "log": rec.log}
            for name, rec in sorted(state.processes.items())
        },
    }
