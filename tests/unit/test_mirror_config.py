from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.config import MirrorConfig, MirrorNode, load_config
from node.announce import key_id
from node.config import ConfigError
from tests.unit.samples import load_text

KEY_A = key_id(Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).public_key())
KEY_B = key_id(Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32).public_key())

GOOD = f"""
producers = ["{KEY_A}", "{KEY_B}"]
factories = ["factory1"]
devices = ["factory2/gate"]

[node]
kubo_api = "http://127.0.0.1:5001"
store_dir = "/tmp/camswarm-mirror-test"
live_window = 8
catchup_interval_s = 5
"""


def _load(tmp_path: Path, text: str) -> MirrorConfig:
    return load_text(tmp_path, "mirror.toml", text, load_config)


def test_good_config(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    assert config.producers == [KEY_A, KEY_B]
    assert config.node.store_dir == Path("/tmp/camswarm-mirror-test")
    assert config.node.live_window == 8
    assert config.node.catchup_interval_s == 5.0
    assert isinstance(config.node.catchup_interval_s, float)
    assert config.node.retention_bytes == 0
    assert config.node.pin is True
    assert config.node.admin_listen == "127.0.0.1:9181"
    keys = config.trusted_keys()
    assert list(keys) == [KEY_A, KEY_B]
    assert all(key_id(public) == identifier for identifier, public in keys.items())


def test_defaults() -> None:
    node = MirrorNode()
    assert (node.live_window, node.retention_days, node.fetch_concurrency, node.queue_size) == (6, 30, 4, 256)
    assert node.store_dir == Path("/var/lib/camswarm/mirror")


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        pytest.param(
            ("live_window = 8", "live_window = 2"), "node.live_window", "between 3 and 100", id="low"
        ),
        pytest.param(
            ("live_window = 8", "live_window = 101"), "node.live_window", "between 3 and 100", id="high"
        ),
        pytest.param(("live_window = 8", "live_window = 8.0"), "node.live_window", "integer", id="float"),
        pytest.param(("live_window = 8", "pin = 1"), "node.pin", "true or false", id="int-not-bool"),
        pytest.param(
            ("live_window = 8", "retention_bytes = -1"), "node.retention_bytes", "at least 0", id="neg"
        ),
        pytest.param(("live_window = 8", "live_windw = 8"), "node.live_windw", "unknown key", id="typo"),
        pytest.param(("[node]", "[nodes]"), "nodes", "unknown key", id="unknown-section"),
        pytest.param(
            ('devices = ["factory2/gate"]', 'devices = ["factory2/gate"]\nfilter = 1'),
            "filter",
            "unknown key",
            id="unknown-top-level",
        ),
        pytest.param(
            (f'"{KEY_B}"', '"not-a-key"'), "producers[1]", "not a producer key id", id="bad-producer"
        ),
        pytest.param(
            (f'"{KEY_B}"', f'"{KEY_B}="'), "producers[1]", "not a producer key id", id="padded-producer"
        ),
        pytest.param(
            (f'"{KEY_B}"', f'"{KEY_A}"'), "producers[1]", "duplicate producer", id="duplicate-producer"
        ),
        pytest.param((f'"{KEY_B}"', "42"), "producers[1]", "string", id="producer-not-string"),
        pytest.param(
            ('devices = ["factory2/gate"]', 'devices = ["gate"]'),
            "devices[0]",
            "factory/device",
            id="device-without-factory",
        ),
        pytest.param(
            ('devices = ["factory2/gate"]', 'devices = ["factory2/gate/x"]'),
            "devices[0]",
            "factory/device",
            id="device-extra-part",
        ),
        pytest.param(
            ('devices = ["factory2/gate"]', 'devices = ["factory2/ga te"]'),
            "devices[0]",
            "factory/device",
            id="device-bad-name",
        ),
        pytest.param(
            ('devices = ["factory2/gate"]', 'devices = ["factory2/gate", "factory2/gate"]'),
            "devices[1]",
            "duplicate device",
            id="duplicate-device",
        ),
        pytest.param(
            ('factories = ["factory1"]', 'factories = ["-factory1"]'),
            "factories[0]",
            "does not match",
            id="bad-factory",
        ),
        pytest.param(
            ('factories = ["factory1"]', 'factories = "factory1"'),
            "factories",
            "array",
            id="factories-string",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, change: tuple[str, str], key: str, message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, GOOD.replace(old, new, 1))
    assert info.value.key == key


def test_non_canonical_producer_id_is_refused(tmp_path: Path) -> None:
    # 43 base64url characters carry 258 bits: the last 2 are padding, and setting them
    # spells the same key differently. Announcements carry the canonical spelling only.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(KEY_B[-1])
    assert last % 4 == 0
    other = KEY_B[:-1] + alphabet[last + 1]
    with pytest.raises(ConfigError, match="not canonical") as info:
        _load(tmp_path, GOOD.replace(f'"{KEY_B}"', f'"{other}"', 1))
    assert info.value.key == "producers[1]"
    assert KEY_B in info.value.message


def test_producers_are_required(tmp_path: Path) -> None:
    without = GOOD.replace(f'producers = ["{KEY_A}", "{KEY_B}"]\n', "")
    for text in (without, GOOD.replace(f'["{KEY_A}", "{KEY_B}"]', "[]", 1), "[node]\n"):
        with pytest.raises(ConfigError, match="at least one") as info:
            _load(tmp_path, text)
        assert info.value.key == "producers"


def test_documented_example_loads() -> None:
    example = Path(__file__).parents[2] / "docs" / "mirror.example.toml"
    config = load_config(example)
    assert len(config.producers) == 1
    assert (config.factories, config.devices) == ([], [])
    assert config.node == MirrorNode()
    assert list(config.trusted_keys()) == config.producers


@pytest.mark.parametrize(
    ("factories", "devices", "camera", "wanted"),
    [
        ([], [], ("factory1", "gate"), True),
        ([], [], ("anything", "else"), True),
        (["factory1"], [], ("factory1", "gate"), True),
        (["factory1"], [], ("factory2", "gate"), False),
        ([], ["factory2/gate"], ("factory2", "gate"), True),
        ([], ["factory2/gate"], ("factory2", "dock"), False),
        ([], ["factory2/gate"], ("factory1", "gate"), False),
        (["factory1"], ["factory2/gate"], ("factory1", "dock"), True),
        (["factory1"], ["factory2/gate"], ("factory2", "gate"), True),
        (["factory1"], ["factory2/gate"], ("factory2", "dock"), False),
        (["factory1"], ["factory2/gate"], ("factory3", "gate"), False),
    ],
)
def test_wants(factories: list[str], devices: list[str], camera: tuple[str, str], wanted: bool) -> None:
    config = MirrorConfig(producers=[KEY_A], factories=factories, devices=devices)
    assert config.wants(*camera) is wanted
