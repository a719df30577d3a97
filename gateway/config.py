"""The gateway's configuration (TOML). See docs/gateway.example.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.config import HOSTPORT, NAME, load, setting


@dataclass(frozen=True)
class GatewayNode:
    listen: str = setting("127.0.0.1:8090", pattern=HOSTPORT)
    # The store of the mirror this gateway runs beside (its store_dir).
    store_dir: Path = setting(Path("/var/lib/camswarm/mirror"))
    # Kubo's HTTP gateway on this host: exports read segments the store lacks from here by CID.
    kubo_gateway: str = setting("http://127.0.0.1:8080", pattern=r"http://[^\s/]+")
    catalog: str = setting("mongodb://127.0.0.1:27017/", pattern=r"mongodb(\+srv)?://\S+")
    catalog_db: str = setting("camswarm", pattern=NAME)
    users_file: Path = setting(Path("/etc/camswarm/users.json"))
    # Signs segment links (nginx checks them with the same secret) and nothing else;
    # created 0600 on first start when missing. Every gateway behind one nginx shares it.
    secret_file: Path = setting(Path("/etc/camswarm/link.secret"))
    live_link_ttl_s: int = setting(120, min=10, max=86_400)  # a live playlist's links, re-issued per reload
    replay_link_slack_s: int = setting(3600, min=60, max=7 * 86_400)  # replay links live range + this
    session_ttl_h: float = setting(12.0, min=0.1, max=24 * 30)
    secure_cookies: bool = setting(False)  # set the Secure flag: true when users reach nginx over HTTPS
    login_attempts: int = setting(5, min=1, max=1000)  # failed logins per username and per client ...
    login_window_s: float = setting(300.0, min=1, max=86_400)  # ... within this window, then 429
    export_max_s: int = setting(3600, min=10, max=86_400)  # longest replay or export range
    ffmpeg: str = setting("ffmpeg")
    # The producers' segment-key master key (hex, 0600): lets GET /keys/... hand encrypted cameras'
    # keys to viewers and exports decrypt. Without it those answer 503; plaintext cameras work.
    master_key_file: str = setting("")


@dataclass(frozen=True)
class GatewayConfig:
    node: GatewayNode = setting(GatewayNode())


def load_config(path: Path) -> GatewayConfig:
    return load(GatewayConfig, path)
