"""Render nginx/camswarm.conf.template into a complete nginx.conf, and write it.

:func:`render` validates every value before it lands in the config: a value
is embedded verbatim in nginx syntax, so a stray ``;``, quote, space or ``$``
would change what the config means. Errors are :class:`node.config.ConfigError`
(a ValueError) naming the argument, e.g. ``gateways[1]: ...``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Sequence
from pathlib import Path

from node.config import ConfigError
from node.files import write_atomic

TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "camswarm.conf.template"

# Directories under state_dir that the template names (temp paths, caches, logs).
# nginx creates only the last component of a temp or cache path, and refuses to start
# without the log directory.
STATE_SUBDIRS = (
    "logs",
    "tmp",
    "tmp/client_body",
    "tmp/proxy",
    "tmp/fastcgi",
    "tmp/uwsgi",
    "tmp/scgi",
    "cache",
    "cache/playlists",
    "cache/segments",
)

# Passive health checks per gateway (kept next to the template's upstream block comment).
GATEWAY_SERVER_PARAMS = "max_fails=2 fail_timeout=10s"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+=,~:-]+")
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def host_port(value: object, *, argument: str, allow_http: bool = False) -> str:
    """``host:port`` (IPv4, ``[IPv6]`` or a DNS name), canonical; ConfigError naming ``argument``.

    With ``allow_http``, ``http://host:port`` (the devnet's form of a Kubo gateway) is accepted too.
    """
    if not isinstance(value, str):
        raise ConfigError(argument, f"must be a host:port string, got {type(value).__name__}")
    text = value
    if allow_http and text.startswith("http://"):
        text = text.removeprefix("http://").removesuffix("/")
    bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})", text)
    plain = re.fullmatch(r"([^:\[\]]+):([0-9]{1,5})", text)
    match = bracketed or plain
    if match is None:
        raise ConfigError(argument, f"{value!r} is not host:port")
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise ConfigError(argument, f"{value!r}: port must be between 1 and 65535")
    if bracketed:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]:{port}"
        except ValueError:
            raise ConfigError(argument, f"{value!r}: {host!r} is not an IPv6 address") from None
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return f"{ipaddress.IPv4Address(host)}:{port}"
        except ValueError:
            raise ConfigError(argument, f"{value!r}: {host!r} is not an IPv4 address") from None
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise ConfigError(argument, f"{value!r}: {host!r} is not a host name")
    return f"{host}:{port}"


def config_path(value: object, *, argument: str) -> str:
    """An absolute directory path made of characters that need no quoting in nginx.conf."""
    if not isinstance(value, str | Path):
        raise ConfigError(argument, f"must be a path, got {type(value).__name__}")
    path = Path(value)
    text = str(path)
    if not path.is_absolute():
        raise ConfigError(argument, f"{text!r} must be an absolute path")
    if ".." in path.parts:
        raise ConfigError(argument, f"{text!r} must not contain '..'")
    if not _SAFE_PATH.fullmatch(text):
        raise ConfigError(argument, f"{text!r} may only contain letters, digits and _ . / @ + = , ~ : -")
    return text


def _gateways(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError("gateways", "must be a list of host:port strings")
    if not value:
        raise ConfigError("gateways", "must name at least one gateway")
    servers = [host_port(item, argument=f"gateways[{i}]", allow_http=True) for i, item in enumerate(value)]
    for i, server in enumerate(servers):
        if server in servers[:i]:
            raise ConfigError(f"gateways[{i}]", f"{server} is listed twice")
    return servers


def _secret(value: object) -> str:
    if not isinstance(value, str) or not _SECRET.fullmatch(value):
        # The value itself is never echoed: it is a secret.
        raise ConfigError(
            "link_secret", "must be 32 to 256 characters of A-Z a-z 0-9 _ - (see links.new_secret)"
        )
    return value


def _worker_user(value: object) -> str:
    if value is None:
        return "# No user directive: nginx runs as the invoking, unprivileged user."
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise ConfigError("worker_user", f"{value!r} is not a user name")
    # Only a master started as root switches users; that account must read media_root.
    return f"user {value};"


def read_template(path: Path = TEMPLATE) -> string.Template:
    try:
        return string.Template(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"nginx config template {path} is missing: it ships in the repository's nginx/ directory"
        ) from None


def render(
    *,
    listen: str,
    state_dir: Path,
    media_root: Path,
    kubo_gateway: str,
    gateways: Sequence[str],
    link_secret: str,
    worker_user: str | None = None,
    template: Path = TEMPLATE,
) -> str:
    """The nginx.conf text for these settings; ConfigError (ValueError) naming a bad argument.

    ``worker_user`` matters only when nginx is started as root (to bind a low port): its
    workers then run as that account instead of nginx's default "nobody".
    """
    values = {
        "listen": host_port(listen, argument="listen"),
        "state_dir": config_path(state_dir, argument="state_dir"),
        "media_root": config_path(media_root, argument="media_root"),
        "kubo_gateway": host_port(kubo_gateway, argument="kubo_gateway", allow_http=True),
        "upstream_servers": "\n".join(
            f"        server {server} {GATEWAY_SERVER_PARAMS};" for server in _gateways(gateways)
        ),
        "link_secret": _secret(link_secret),
        "worker_user": _worker_user(worker_user),
    }
    try:
        return read_template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"nginx config template {template} has a bad placeholder: {exc}") from None


def write_config(path: Path, text: str, *, state_dir: Path | None = None) -> None:
    """Write ``text`` to ``path`` (mode 0600: it holds the link secret) and make the state dirs.

    ``state_dir`` (default: the config's own directory) gets the subdirectories
    the template names, each 0700.
    """
    state = path.parent if state_dir is None else state_dir
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in STATE_SUBDIRS:
        directory = state / name
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text, private=True)
