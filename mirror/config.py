"""The mirror's configuration (TOML). See docs/mirror.example.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.announce import key_id, public_key_from_id
from node.config import HOSTPORT, NAME, ConfigError, load, setting

DEVICE = rf"(?:{NAME})/(?:{NAME})"


@dataclass(frozen=True)
class MirrorNode:
    kubo_api: str = setting("http://127.0.0.1:5001", pattern=r"https?://[^\s/]+")
    catalog: str = setting("mongodb://127.0.0.1:27017/", pattern=r"mongodb(\+srv)?://\S+")
    catalog_db: str = setting("camswarm", pattern=NAME)
    topic: str = setting("camswarm/segments/v1", pattern=r"[A-Za-z0-9/_.-]{1,128}")
    store_dir: Path = setting(Path("/var/lib/camswarm/mirror"))
    admin_listen: str = setting("127.0.0.1:9181", pattern=HOSTPORT)
    live_window: int = setting(6, min=3, max=100)  # segments kept in the live playlist
    retention_days: int = setting(30, min=1, max=3650)
    retention_bytes: int = setting(0, min=0)  # 0: no byte budget, only retention_days
    fetch_concurrency: int = setting(4, min=1, max=64)
    queue_size: int = setting(256, min=8, max=100_000)
    pin: bool = setting(True)  # pin fetched CIDs in the local Kubo
    catchup_interval_s: float = setting(30.0, min=1, max=3600)
    backfill_hours: float = setting(24.0, min=0.1, max=24 * 3650)  # how far back catch-up looks
    fetch_timeout_s: float = setting(30.0, min=1, max=3600)  # one segment through Kubo
    # Test networks only: POST /faults/drop-announcements {"seconds": N} on the admin port
    # makes the subscriber ignore every message for N seconds (missed announcements).
    fault_injection: bool = setting(False)

    def __post_init__(self) -> None:
        if self.backfill_hours > self.retention_days * 24:
            # Catch-up would fetch what retention deletes, forever.
            raise ConfigError("backfill_hours", "must not exceed retention_days * 24")


def _unique(values: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{field}[{index}]", f"duplicate {what} {value!r}")
        seen.add(value)


@dataclass(frozen=True)
class MirrorConfig:
    node: MirrorNode = setting(MirrorNode())
    # Key ids (`camswarm producer pubkey`) whose announcements this mirror accepts.
    producers: list[str] = setting([])
    # What to mirror: cameras of these factories plus these "factory/device" cameras.
    # Both empty: every camera the allow-listed producers announce.
    factories: list[str] = setting([])
    devices: list[str] = setting([])

    def __post_init__(self) -> None:
        if not self.producers:
            raise ConfigError("producers", "at least one producer key id is required")
        for index, identifier in enumerate(self.producers):
            try:
                public_key = public_key_from_id(identifier)
            except ValueError as exc:
                raise ConfigError(f"producers[{index}]", str(exc)) from None
            canonical = key_id(public_key)
            if canonical != identifier:
                # Same key, other spelling: announcements carry the canonical id, so it would never match.
                raise ConfigError(
                    f"producers[{index}]", f"{identifier!r} is not canonical, the key id is {canonical!r}"
                )
        _unique(self.producers, "producers", "producer")
        for index, factory in enumerate(self.factories):
            if not re.fullmatch(NAME, factory):
                raise ConfigError(f"factories[{index}]", f"{factory!r} does not match {NAME}")
        _unique(self.factories, "factories", "factory")
        for index, device in enumerate(self.devices):
            if not re.fullmatch(DEVICE, device):
                raise ConfigError(f"devices[{index}]", f"{device!r} is not factory/device (each {NAME})")
        _unique(self.devices, "devices", "device")

    def wants(self, factory: str, device: str) -> bool:
        """Whether this mirror keeps the camera ``factory/device``."""
        if not self.factories and not self.devices:
            return True
        return factory in self.factories or f"{factory}/{device}" in self.devices

    def trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        """Allow-listed producer key id -> public key (ids were validated at load)."""
        return {identifier: public_key_from_id(identifier) for identifier in self.producers}


def load_config(path: Path) -> MirrorConfig:
    return load(MirrorConfig, path)
