"""The producer's configuration (TOML). See docs/producer.example.toml."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from node.config import HOSTPORT, NAME, ConfigError, load, setting


@dataclass(frozen=True)
class CameraConfig:
    factory: str = setting(pattern=NAME)
    device: str = setting(pattern=NAME)
    rtsp_url: str = setting(pattern=r"rtsps?://[^\s]+")
    username: str = setting("")
    # The password comes from an environment variable or a file, never from this file.
    password_env: str = setting("", pattern=r"([A-Za-z_][A-Za-z0-9_]*)?")
    password_file: str = setting("")
    segment_seconds: int = setting(2, min=1, max=10)
    replication_min: int = setting(2, min=1, max=64)
    replication_max: int = setting(3, min=1, max=64)
    retention_days: int = setting(30, min=1, max=3650)
    audio: bool = setting(False)
    # HLS AES-128: only ciphertext is added to IPFS; needs node.master_key_file.
    encrypt: bool = setting(False)
    key_rotation_segments: int = setting(60, min=1, max=100_000)  # a new key after this many segments

    def __post_init__(self) -> None:
        if self.replication_min > self.replication_max:
            raise ConfigError("replication_min", "must not exceed replication_max")
        if self.password_env and self.password_file:
            raise ConfigError("password_env", "set password_env or password_file, not both")
        if "@" in (urlsplit(self.rtsp_url).netloc or ""):
            raise ConfigError(
                "rtsp_url", "must not contain credentials; use username and password_env/password_file"
            )

    @property
    def key(self) -> str:
        return f"{self.factory}/{self.device}"

    def password(self) -> str:
        """Resolve the secret at start-up; raises ConfigError naming where it was expected."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"camera {self.key}.password_env", f"environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file:
            try:
                return Path(self.password_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"camera {self.key}.password_file", f"cannot read: {exc.strerror}"
                ) from None
        return ""

    def authenticated_url(self) -> str:
        """The RTSP URL with credentials, for ffmpeg only: never log it."""
        if not self.username:
            return self.rtsp_url
        parts = urlsplit(self.rtsp_url)
        userinfo = quote(self.username, safe="") + ":" + quote(self.password(), safe="")
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


@dataclass(frozen=True)
class NodeSettings:
    kubo_api: str = setting("http://127.0.0.1:5001", pattern=r"https?://[^\s/]+")
    cluster_api: str = setting("http://127.0.0.1:9094", pattern=r"https?://[^\s/]+")
    catalog: str = setting("mongodb://127.0.0.1:27017/", pattern=r"mongodb(\+srv)?://\S+")
    catalog_db: str = setting("camswarm", pattern=NAME)
    topic: str = setting("camswarm/segments/v1", pattern=r"[A-Za-z0-9/_.-]{1,128}")
    state_dir: Path = setting(Path("/var/lib/camswarm/producer"))
    key_file: str = setting("")  # default: <state_dir>/producer.key
    admin_listen: str = setting("127.0.0.1:9180", pattern=HOSTPORT)
    local_retention_hours: float = setting(24.0, min=0, max=24 * 365)
    disk_min_free_mb: int = setting(1024, min=0, max=1 << 30)
    ffmpeg: str = setting("ffmpeg")
    # 32 random bytes in hex, 0600: wraps the segment keys. Required when a camera encrypts;
    # losing it loses every encrypted segment.
    master_key_file: str = setting("")

    @property
    def key_path(self) -> Path:
        return Path(self.key_file).expanduser() if self.key_file else self.state_dir / "producer.key"


@dataclass(frozen=True)
class AnchoringSettings:
    """Period roots (issue 6): each camera's footage is reduced to one root per period."""

    enabled: bool = setting(True)
    # Periods tile each UTC day from midnight, so the length must divide a day.
    period_s: int = setting(3600, min=60, max=86_400)
    # A period closes this long after its end (its last segment must have been cut and
    # journaled) and once none of its segments is still waiting in the outbox.
    close_delay_s: float = setting(30.0, min=0, max=3600)

    def __post_init__(self) -> None:
        if 86_400 % self.period_s:
            raise ConfigError("period_s", f"must divide a day (86400 s) evenly, got {self.period_s}")


@dataclass(frozen=True)
class ProducerConfig:
    node: NodeSettings = setting(NodeSettings())
    anchoring: AnchoringSettings = setting(AnchoringSettings())
    cameras: list[CameraConfig] = setting([])

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError("cameras", "at least one [[cameras]] entry is required")
        seen: set[str] = set()
        for index, camera in enumerate(self.cameras):
            if camera.key in seen:
                raise ConfigError(f"cameras[{index}]", f"duplicate camera {camera.key}")
            seen.add(camera.key)
            if camera.segment_seconds * 2 + 2 > self.anchoring.close_delay_s and self.anchoring.enabled:
                raise ConfigError(
                    "anchoring.close_delay_s",
                    f"must be at least twice camera {camera.key}'s segment_seconds plus 2 s, "
                    f"so a period's last segment is journaled before it closes",
                )
        encrypting = [c.key for c in self.cameras if c.encrypt]
        if encrypting and not self.node.master_key_file:
            raise ConfigError(
                "node.master_key_file", f"is required when a camera encrypts ({', '.join(encrypting)})"
            )


def load_config(path: Path) -> ProducerConfig:
    return load(ProducerConfig, path)
