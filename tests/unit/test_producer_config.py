from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node.config import ConfigError
from producer.config import CameraConfig, ProducerConfig, load_config
from producer.ffmpeg_cmd import build_argv, redact, session_name
from tests.unit.samples import load_text

GOOD = """
[node]
kubo_api = "http://127.0.0.1:5001"
state_dir = "/tmp/camswarm-test"

[[cameras]]
factory = "factory1"
device = "cam1"
rtsp_url = "rtsp://10.0.0.5:554/stream1"
username = "viewer"
password_env = "CAM1_PASSWORD"

[[cameras]]
factory = "factory1"
device = "cam2"
rtsp_url = "rtsp://10.0.0.6:554/stream1"
segment_seconds = 4
"""


def _load(tmp_path: Path, text: str) -> ProducerConfig:
    return load_text(tmp_path, "producer.toml", text, load_config)


def test_good_config(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    assert [c.key for c in config.cameras] == ["factory1/cam1", "factory1/cam2"]
    assert config.cameras[1].segment_seconds == 4
    assert config.node.key_path == Path("/tmp/camswarm-test/producer.key")


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        pytest.param(
            ("segment_seconds = 4", "segment_seconds = 0"),
            "cameras[1].segment_seconds",
            "between 1 and 10",
            id="bounds",
        ),
        pytest.param(
            ("segment_seconds = 4", "segment_seconds = true"),
            "cameras[1].segment_seconds",
            "integer",
            id="bool-not-int",
        ),
        pytest.param(
            ("segment_seconds = 4", "segmnt_seconds = 4"),
            "cameras[1].segmnt_seconds",
            "unknown key",
            id="typo",
        ),
        pytest.param(
            ('device = "cam2"', 'device = "cam 2"'), "cameras[1].device", "does not match", id="bad-name"
        ),
        pytest.param(
            ('device = "cam2"', 'device = "cam1"'), "cameras[1]", "duplicate camera", id="duplicate"
        ),
        pytest.param(
            ('rtsp_url = "rtsp://10.0.0.6:554/stream1"', 'rtsp_url = "rtsp://u:p@10.0.0.6/s"'),
            "cameras[1].rtsp_url",
            "credentials",
            id="credentials-in-url",
        ),
        pytest.param(
            ("segment_seconds = 4", "replication_min = 4\nreplication_max = 2"),
            "cameras[1].replication_min",
            "exceed",
            id="replication",
        ),
        pytest.param(
            ('kubo_api = "http://127.0.0.1:5001"', "kubo_api = 5001"), "node.kubo_api", "string", id="type"
        ),
        pytest.param(("[node]", "[nodes]"), "nodes", "unknown key", id="unknown-section"),
        pytest.param(
            ("segment_seconds = 4", "encrypt = true"),
            "node.master_key_file",
            "required when a camera encrypts",
            id="encrypt-without-master-key",
        ),
        pytest.param(
            ("segment_seconds = 4", "encrypt = 1"), "cameras[1].encrypt", "true or false", id="encrypt-type"
        ),
        pytest.param(
            ("segment_seconds = 4", "key_rotation_segments = 0"),
            "cameras[1].key_rotation_segments",
            "between 1 and",
            id="rotation-bounds",
        ),
        pytest.param(
            ("segment_seconds = 4", "key_rotation_segments = 1.5"),
            "cameras[1].key_rotation_segments",
            "integer",
            id="rotation-type",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, change: tuple[str, str], key: str, message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, GOOD.replace(old, new, 1))
    assert info.value.key == key


def test_encryption_settings(tmp_path: Path) -> None:
    config = _load(tmp_path, GOOD)
    assert not config.cameras[0].encrypt and config.cameras[0].key_rotation_segments == 60
    text = GOOD.replace("segment_seconds = 4", "encrypt = true\nkey_rotation_segments = 10").replace(
        "[node]", '[node]\nmaster_key_file = "/etc/camswarm/master.key"'
    )
    config = _load(tmp_path, text)
    assert config.cameras[1].encrypt and config.cameras[1].key_rotation_segments == 10
    assert config.node.master_key_file == "/etc/camswarm/master.key"


def test_missing_required_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one"):
        _load(tmp_path, "[node]\n")
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, '[[cameras]]\nfactory = "f"\ndevice = "d"\n')
    assert info.value.key == "cameras[0].rtsp_url"
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[[cameras]\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    camera = CameraConfig(
        factory="f", device="d", rtsp_url="rtsp://h:554/s", username="u@x", password_env="CAMPW"
    )
    with pytest.raises(ConfigError, match="CAMPW is not set"):
        camera.password()
    monkeypatch.setenv("CAMPW", "p:ss/w@rd")
    assert camera.authenticated_url() == "rtsp://u%40x:p%3Ass%2Fw%40rd@h:554/s"
    assert "p:ss" not in repr(camera)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    from_file = CameraConfig(
        factory="f", device="d", rtsp_url="rtsp://h/s", username="u", password_file=str(secret)
    )
    assert from_file.password() == "s3cret"


def test_argv_is_copy_hls_over_tcp() -> None:
    camera = CameraConfig(factory="f", device="d", rtsp_url="rtsp://h/s", segment_seconds=4)
    argv = build_argv(
        camera, Path("/state/sessions/f/d/20261121T062705Z"), url="rtsp://u:p@h/s", binary="/usr/bin/ffmpeg"
    )
    assert argv[0] == "/usr/bin/ffmpeg"
    pairs = dict(itertools.pairwise(argv))
    assert pairs["-rtsp_transport"] == "tcp"
    assert pairs["-i"] == "rtsp://u:p@h/s"
    assert pairs["-c"] == "copy"
    assert pairs["-f"] == "hls"
    assert pairs["-hls_time"] == "4"
    assert "program_date_time" in pairs["-hls_flags"] and "temp_file" in pairs["-hls_flags"]
    assert pairs["-hls_segment_filename"] == "/state/sessions/f/d/20261121T062705Z/seg-%06d.ts"
    assert "/state/sessions/f/d/20261121T062705Z/index.m3u8" in argv
    assert "-an" not in argv and "0:a:0?" not in argv
    assert "rtsp://u:p@h/s" not in redact(argv, "rtsp://u:p@h/s", "rtsp://h/s")


def test_audio_is_copied_when_asked() -> None:
    camera = CameraConfig(factory="f", device="d", rtsp_url="rtsp://h/s", audio=True)
    assert "0:a:0?" in build_argv(camera, Path("/s"), url=camera.rtsp_url)


def test_session_names_sort_by_time() -> None:
    first = session_name(datetime(2026, 11, 21, 6, 27, 5, tzinfo=UTC))
    assert first == "20261121T062705Z"
    assert session_name(datetime(2026, 11, 21, 6, 27, 5, tzinfo=UTC), attempt=1) == "20261121T062705Z-1"


def test_documented_example_loads() -> None:
    example = Path(__file__).parents[2] / "docs" / "producer.example.toml"
    config = load_config(example)
    assert [c.key for c in config.cameras] == ["factory1/gate", "factory1/dock"]
    assert config.node.admin_listen == "127.0.0.1:9180"
