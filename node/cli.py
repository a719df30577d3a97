"""The ``camswarm`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.users import UserError
from node.config import ConfigError
from node.devnet import network
from node.devnet.network import PRODUCER
from node.keys import KeyFileError
from node.logs import configure_logging


def _progress(message: str) -> None:
    print(f"devnet: {message}", file=sys.stderr, flush=True)


def _print_summary(info: dict[str, Any]) -> None:
    print(f"devnet in {info['dir']}: {'running' if info['running'] else 'stopped'}")
    for name, node in info["nodes"].items():
        print(
            f"  {name:<10} kubo {node['kubo_api']}  gateway {node['kubo_gateway']}"
            f"  cluster {node['cluster_api']}"
        )
    print(f"  catalog    {info['catalog']}")
    chain = info["chain"]
    if "chain" in info["processes"]:
        print(f"  chain      {chain['rpc']}  FootageRegistry {chain['contract']}")
    if "anchor" in info["processes"]:
        print(f"  anchor     {chain['anchor_admin']}/healthz  (config {chain['anchor_config']})")
    if PRODUCER in info["processes"]:
        print(f"  producer   {info['producer']['admin']}/healthz  (config {info['producer']['config']})")
    for name, mirror in info["mirrors"].items():
        if name in info["processes"]:
            print(f"  {name:<10} {mirror['admin']}/healthz  store {mirror['store']}")
    for name, gw in info["gateways"].items():
        if name in info["processes"]:
            print(f"  {name:<10} {gw['url']}/healthz  store {gw['store']}")
    web = info["web"]
    if web and "nginx" in info["processes"]:
        print(f"  nginx      {web['url']}")
    print(f"  topic      {info['topic']}")
    for cam in info["cameras"]:
        state = "up" if cam["running"] else "down"
        print(f"  camera     {cam['factory']}/{cam['device']:<6} {cam['rtsp']}  ({state})")
    dead = [name for name, p in info["processes"].items() if not p["alive"]]
    if info["running"] and dead:
        print(f"  not running: {', '.join(dead)}")
    if web and info["processes"].get("nginx", {}).get("alive"):
        _print_login(web)


def _print_login(web: dict[str, str]) -> None:
    """How to log in to the local demo. Its passwords are printed here on purpose, nowhere else."""
    passwords = network.read_credentials(Path(web["credentials"]))
    print()
    print(f"open {web['url']} and log in as")
    if "demo-client" in passwords and "demo-admin" in passwords:
        print(f"  demo-client / {passwords['demo-client']}   (factory1's cameras)")
        print(f"  or demo-admin / {passwords['demo-admin']}   (every camera)")
    else:
        print(f"  a user of {Path(web['credentials']).parent / 'users.json'} (camswarm users add ...)")
    print()


async def _devnet_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    await network.up(
        directory,
        mirrors=args.mirrors,
        cameras=args.cameras,
        producer=not args.no_producer,
        netns_hosts=args.netns,
        progress=_progress,
    )
    info = network.status(directory)
    _print_summary(info)
    if args.detach:
        print(
            f"verify footage: camswarm verify --config {info['chain']['anchor_config']} --factory factory1 "
            "--device cam1 --start <ISO time> --end <ISO time> [--store <a mirror's store>]"
        )
        print(f"stop it with: camswarm devnet down --dir {info['dir']}")
        return 0
    print("press Ctrl-C to stop the devnet", flush=True)
    await _stop_on_signal().wait()
    _progress("stopping")
    await network.down(directory)
    return 0


async def _devnet_down(args: argparse.Namespace) -> int:
    results = await network.down(Path(args.dir))
    for name, outcome in sorted(results.items()):
        print(f"{name}: {outcome}")
    return 0


async def _devnet_status(args: argparse.Namespace) -> int:
    info = network.status(Path(args.dir))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_summary(info)
    return 0 if info["running"] else 3


async def _stop_or_start(directory: Path, action: str, name: str, label: str, term_timeout: float) -> int:
    if action == "stop":
        outcome = await network.stop_process(directory, name, term_timeout=term_timeout)
        print(f"{label}: {outcome}")
    else:
        await network.start_process(directory, name)
        print(f"{label}: running")
    return 0


async def _devnet_camera(args: argparse.Namespace) -> int:
    name = network.camera_process(Path(args.dir), args.device)
    return await _stop_or_start(Path(args.dir), args.action, name, f"camera {args.device}", term_timeout=5.0)


async def _devnet_process(args: argparse.Namespace) -> int:
    return await _stop_or_start(Path(args.dir), args.action, args.name, args.name, term_timeout=15.0)


async def _devnet_kill(args: argparse.Namespace) -> int:
    print(f"{args.name}: {await network.kill_process(Path(args.dir), args.name)}")
    return 0


async def _devnet_chaos(args: argparse.Namespace) -> int:
    from node.devnet import chaos

    rows = await chaos.chaos(
        Path(args.dir),
        cameras=args.cameras,
        mirrors=args.mirrors,
        hold=args.hold,
        bound=args.bound,
        only=args.only,
        keep=args.keep,
        progress=_progress,
    )
    print(chaos.table(rows))
    failed = [r.fault for r in rows if not r.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


async def _devnet_fault(args: argparse.Namespace) -> int:
    from node.devnet.netns import Fault

    try:
        new = Fault() if args.heal else Fault(down=args.cut, delay_ms=args.delay_ms, loss_pct=args.loss_pct)
    except ValueError as exc:
        raise ConfigError("fault", str(exc)) from exc
    before = await network.fault(Path(args.dir), args.host, new)
    print(f"{args.host}: {new.describe()} (was {before.describe()})")
    return 0


async def _producer_pubkey(args: argparse.Namespace) -> int:
    # Imported here: the producer role is optional for users of the devnet alone.
    from node import announce, keys
    from producer.config import load_config

    config = load_config(_config_file(args, "producer pubkey"))
    key, created = keys.load_or_create(config.node.key_path)
    if created:
        print(f"created a new producer key at {config.node.key_path}", file=sys.stderr)
    print(announce.key_id(key.public_key()))
    return 0


def _config_file(args: argparse.Namespace, command: str) -> Path:
    """The role's --config, or an error pointing at the documented example."""
    if not args.config:
        role = command.split()[0]
        raise ConfigError(
            "--config", f"camswarm {command} needs --config FILE (see docs/{role}.example.toml)"
        )
    return Path(args.config)


def _add_role(
    roles: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Any,
    *,
    help: str,
    does: str,
) -> argparse.ArgumentParser:
    """A long-running role's command: ``camswarm NAME --config FILE``."""
    parser = roles.add_parser(
        name, help=help, description=f"{does} until SIGTERM: camswarm {name} --config FILE"
    )
    parser.add_argument("--config", help=f"the {name}'s TOML config (see docs/{name}.example.toml)")
    parser.set_defaults(handler=handler)
    return parser


def _stop_on_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: how a long-running role is told to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _producer_run(args: argparse.Namespace) -> int:
    from producer.config import load_config
    from producer.service import Producer

    config = load_config(_config_file(args, "producer"))
    for camera in config.cameras:
        camera.password()  # a missing secret is a start-up error, not a recording failure
    await Producer(config).run(_stop_on_signal())
    return 0


async def _mirror_run(args: argparse.Namespace) -> int:
    from mirror.config import load_config
    from mirror.service import Mirror

    await Mirror(load_config(_config_file(args, "mirror"))).run(_stop_on_signal())
    return 0


async def _gateway_run(args: argparse.Namespace) -> int:
    from gateway.app import serve
    from gateway.config import load_config

    await serve(load_config(_config_file(args, "gateway")), _stop_on_signal())
    return 0


async def _anchor_run(args: argparse.Namespace) -> int:
    from node.anchoring import Anchorer, load_config, read_private_key
    from node.catalog import Catalog
    from node.chain import Registry

    settings = load_config(_config_file(args, "anchor")).anchor
    key = read_private_key(settings.key_file)
    stop = _stop_on_signal()
    async with Catalog(settings.catalog, settings.catalog_db) as catalog:
        registry = Registry(
            settings.rpc_url, settings.contract, private_key=key, receipt_timeout=settings.receipt_timeout_s
        )
        try:
            anchorer = Anchorer(settings, catalog, registry)
            runner = await _admin_server(settings.admin_listen, anchorer.health)
            try:
                await anchorer.run(stop)
            finally:
                if runner is not None:
                    await runner.cleanup()
        finally:
            await registry.close()
    return 0


async def _admin_server(listen: str, health: Any) -> Any:
    """A /healthz endpoint on ``listen`` (host:port), or None when it is empty."""
    if not listen:
        return None
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(health())

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    return runner


async def _anchor_index(args: argparse.Namespace) -> int:
    from node.anchoring import Anchorer, load_config
    from node.catalog import Catalog
    from node.chain import Registry

    settings = load_config(_config_file(args, "anchor index")).anchor
    async with Catalog(settings.catalog, settings.catalog_db) as catalog:
        registry = Registry(settings.rpc_url, settings.contract)
        try:
            copied = await Anchorer(settings, catalog, registry).index()
        finally:
            await registry.close()
    print(f"indexed {copied} new anchor event(s) from {settings.contract}")
    return 0


def _instant_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-21T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z for UTC")
    return moment.astimezone(UTC)


async def _verify(args: argparse.Namespace) -> int:
    from mirror.store import Store
    from mirror.verify import Sources, load_proof, verify_proof, verify_range
    from node.anchoring import load_config
    from node.anchors import ProofError
    from node.catalog import Catalog
    from node.chain import Registry
    from node.errors import DaemonError
    from node.kubo import KuboClient

    settings = load_config(_config_file(args, "verify")).anchor
    registry = Registry(settings.rpc_url, settings.contract)
    try:
        if args.proof or args.clip:
            if not (args.proof and args.clip):
                raise ConfigError("--proof", "--proof and --clip go together")
            lines = await verify_proof(
                registry,
                await asyncio.to_thread(load_proof, Path(args.proof)),
                Path(args.clip),
                trusted_contract=settings.contract,
            )
            for line in lines:
                print(line.line(), flush=True)
            return 1 if any(line.status != "OK" for line in lines) else 0
        missing = [f"--{name}" for name in ("factory", "device", "start", "end") if not getattr(args, name)]
        if missing:
            raise ConfigError(missing[0], "range verification needs --factory, --device, --start and --end")
        store = Store(Path(args.store)) if args.store else None
        if store is not None and not await asyncio.to_thread(Path(args.store).is_dir):
            raise ConfigError("--store", f"{args.store} is not a directory")
        mismatches = 0
        async with (
            KuboClient(settings.kubo_api, timeout=60) as kubo,
            Catalog(settings.catalog, settings.catalog_db) as catalog,
        ):
            sources = Sources(registry, kubo, catalog, store)
            async for verdict in verify_range(
                sources, args.factory, args.device, args.start, args.end, args.period_s or settings.period_s
            ):
                print(verdict.line(), flush=True)
                mismatches += verdict.status == "MISMATCH"
        return 1 if mismatches else 0
    except (ProofError, DaemonError) as exc:
        print(f"camswarm verify: cannot verify: {exc}", file=sys.stderr)
        return 2
    finally:
        await registry.close()


async def _nginx_render(args: argparse.Namespace) -> int:
    return await asyncio.to_thread(_write_nginx_config, args)


def _write_nginx_config(args: argparse.Namespace) -> int:
    from gateway.app import load_or_create_secret
    from gateway.config import load_config
    from gateway.nginx_conf import render, write_config

    config = load_config(Path(args.gateway_config)).node
    text = render(
        listen=args.listen,
        state_dir=Path(args.state_dir).resolve(),
        media_root=config.store_dir.resolve(),
        kubo_gateway=config.kubo_gateway,
        gateways=args.gateway or [config.listen],
        link_secret=load_or_create_secret(config.secret_file),
    )
    out = Path(args.out)
    write_config(out, text, state_dir=Path(args.state_dir).resolve())
    print(f"wrote {out}; test it with: nginx -t -c {out.resolve()} -p {Path(args.state_dir).resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camswarm", description="Record IP cameras into a private IPFS network."
    )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    roles = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    devnet = roles.add_parser("devnet", help="run a whole local network of real daemons")
    sub = devnet.add_subparsers(dest="devnet_command", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="start the devnet (or restart the one in DIR)")
    up.add_argument("--dir", required=True, help="directory holding the devnet's state, data and logs")
    up.add_argument("--mirrors", type=int, default=2)
    up.add_argument("--cameras", type=int, default=2)
    up.add_argument("--detach", action="store_true", help="return once ready and leave it running")
    up.add_argument("--no-producer", action="store_true", help="do not record the cameras")
    up.add_argument(
        "--netns",
        action="store_true",
        help="each host in its own network namespace on a private bridge (root; chosen at creation)",
    )
    up.set_defaults(handler=_devnet_up)
    down = sub.add_parser("down", help="stop everything the devnet started")
    down.add_argument("--dir", required=True)
    down.set_defaults(handler=_devnet_down)
    st = sub.add_parser("status", help="print endpoints and process states (exit 3 when stopped)")
    st.add_argument("--dir", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_devnet_status)
    cam = sub.add_parser("camera", help="stop or start one simulated camera (an outage)")
    cam.add_argument("action", choices=["stop", "start"])
    cam.add_argument("device", help="camera device name, e.g. cam1")
    cam.add_argument("--dir", required=True)
    cam.set_defaults(handler=_devnet_camera)
    for action in ("stop", "start"):
        proc = sub.add_parser(action, help=f"{action} one process (e.g. kubo-producer, catalog, producer)")
        proc.add_argument("name", help="a process name as listed by `status`")
        proc.add_argument("--dir", required=True)
        proc.set_defaults(handler=_devnet_process, action=action)
    kill = sub.add_parser("kill", help="SIGKILL one process, a crash (restart it with `start`)")
    kill.add_argument("name", help="a process name as listed by `status`")
    kill.add_argument("--dir", required=True)
    kill.set_defaults(handler=_devnet_kill)
    flt = sub.add_parser(
        "fault",
        help="impair one host's link (--netns devnets): cut it off, add delay or loss, or heal it",
    )
    flt.add_argument("host", help="producer, mirrorN, catalog, chain or front")
    flt.add_argument("--dir", required=True)
    what = flt.add_mutually_exclusive_group(required=True)
    what.add_argument("--cut", action="store_true", help="drop every frame both ways")
    what.add_argument("--heal", action="store_true", help="back to a healthy link")
    what.add_argument("--impair", action="store_true", help="apply --delay-ms and --loss-pct")
    flt.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay added each way")
    flt.add_argument("--loss-pct", type=float, default=0.0, help="frames dropped each way, in percent")
    flt.set_defaults(handler=_devnet_fault)
    cha = sub.add_parser(
        "chaos",
        help="start a --netns devnet, run every fault in turn and print the loss table (exit 1 on any loss)",
    )
    cha.add_argument("--dir", required=True, help="a new directory for the suite's devnet")
    cha.add_argument("--cameras", type=int, default=4)
    cha.add_argument("--mirrors", type=int, default=2)
    cha.add_argument("--hold", type=float, default=120.0, help="how long each partition/outage lasts (s)")
    cha.add_argument("--bound", type=float, default=300.0, help="how long recovery may take (s)")
    cha.add_argument("--only", action="append", help="run only faults whose label has this word")
    cha.add_argument("--keep", action="store_true", help="leave the devnet running afterwards")
    cha.set_defaults(handler=_devnet_chaos)
    producer = _add_role(
        roles,
        "producer",
        _producer_run,
        help="the recording node next to the cameras",
        does="Record the cameras",
    )
    psub = producer.add_subparsers(dest="producer_command", metavar="ACTION")
    pubkey = psub.add_parser("pubkey", help="print the key id that mirrors allow-list (creates the key once)")
    # SUPPRESS: the subcommand's absent option must not erase one given before it.
    pubkey.add_argument("--config", default=argparse.SUPPRESS, help="the producer's TOML config")
    pubkey.set_defaults(handler=_producer_pubkey)
    _add_role(
        roles,
        "mirror",
        _mirror_run,
        help="keep a local, playable copy of the producers' segments",
        does="Mirror announced segments",
    )
    _add_role(
        roles,
        "gateway",
        _gateway_run,
        help="log users in and serve their cameras' playlists (behind nginx)",
        does="Serve the gateway",
    )
    anchor = _add_role(
        roles,
        "anchor",
        _anchor_run,
        help="put each closed period's root on chain (one transaction per camera and period)",
        does="Anchor period roots",
    )
    asub = anchor.add_subparsers(dest="anchor_command", metavar="ACTION")
    index = asub.add_parser("index", help="copy the contract's anchor events into the catalog, then exit")
    index.add_argument("--config", default=argparse.SUPPRESS, help="the anchor service's TOML config")
    index.set_defaults(handler=_anchor_index)
    verify = roles.add_parser(
        "verify",
        help="check footage (a range, or an exported clip and its proof) against the chain",
        description=(
            "Range: recompute each segment's CID, rebuild each period's root and compare it with the "
            "chain, one line per period (OK, MISMATCH naming the files, UNANCHORED, EMPTY). "
            "Clip: check an export's sidecar proof and the clip against the chain. "
            "Exit status: 0 all OK, 1 a mismatch, 2 could not verify."
        ),
    )
    verify.add_argument("--config", help="an anchor TOML config: catalog, chain, contract, Kubo")
    verify.add_argument("--factory")
    verify.add_argument("--device")
    verify.add_argument("--start", type=_instant_arg, help="ISO 8601 with zone, e.g. 2026-11-21T10:00:00Z")
    verify.add_argument("--end", type=_instant_arg)
    verify.add_argument("--store", help="a mirror's store_dir (default: fetch the segments by CID)")
    verify.add_argument("--period-s", type=int, help="the producer's period length (default: the config's)")
    verify.add_argument("--proof", help="an export's sidecar proof JSON")
    verify.add_argument("--clip", help="the exported MP4 the proof describes")
    verify.set_defaults(handler=_verify)
    nginx = roles.add_parser("nginx", help="the front door's configuration")
    nsub = nginx.add_subparsers(dest="nginx_command", required=True, metavar="ACTION")
    render = nsub.add_parser(
        "render",
        help="write nginx.conf for gateways beside a mirror store",
        description="Render nginx/camswarm.conf.template from a gateway config (store, Kubo, secret).",
    )
    render.add_argument(
        "--gateway-config", required=True, help="a gateway's TOML config (store, secret, Kubo)"
    )
    render.add_argument("--listen", default="127.0.0.1:8000", help="where nginx listens (host:port)")
    render.add_argument(
        "--gateway",
        action="append",
        help="a gateway's host:port to balance over (repeat; default: the config's)",
    )
    render.add_argument("--state-dir", required=True, help="nginx's logs, temp files and caches")
    render.add_argument(
        "--out", required=True, help="the nginx.conf to write (0600: it holds the link secret)"
    )
    render.set_defaults(handler=_nginx_render)
    from gateway.users_cli import add_users_parser

    add_users_parser(roles)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Long-running roles log their events; one-shot commands only warnings.
    configure_logging(
        args.log_level
        or ("info" if args.command in ("producer", "mirror", "gateway", "anchor") else "warning")
    )
    try:
        return int(asyncio.run(args.handler(args)))
    except (network.DevnetError, ConfigError, KeyFileError, UserError) as exc:
        print(f"camswarm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
