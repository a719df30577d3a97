"""Pure parts of the producer runtime: restart policy, naming, documents, probes, secrets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import announce, segcrypt
from node.devnet.configs import ProducerCamera, producer_config
from node.layout import mfs_path, published_name
from producer.config import CameraConfig, load_config
from producer.media import MediaInfo, ProbeError, parse_probe
from producer.outbox import Entry, SegmentKey
from producer.pipeline import build_announcement, encrypt_file, key_document, pin_expiry, segment_document
from producer.recorder import (
    RestartPolicy,
    SecretScrubber,
    first_segment_timeout,
    new_session_dir,
    stall_timeout,
)

START = datetime(2026, 11, 21, 6, 27, 5, 120000, tzinfo=UTC)


def _camera(**extra: object) -> CameraConfig:
    fields: dict[str, object] = {"factory": "f1", "device": "gate", "rtsp_url": "rtsp://192.0.2.1/s"}
    fields.update(extra)
    return CameraConfig(**fields)  # type: ignore[arg-type]


def _entry(seq: int = 7, cid: str | None = "bafkqaaa") -> Entry:
    return Entry(
        camera="f1/gate",
        session="20261121T062700Z",
        filename="seg-000003.ts",
        path="/x/seg-000003.ts",
        start=announce.format_start(START),
        duration=2.0,
        size=512_000,
        sha256="ab" * 32,
        id=1,
        seq=seq,
        state="link",
        cid=cid,
        attempts=0,
        last_error="",
        not_before=0.0,
        created_at=0.0,
    )


def test_restart_backoff_grows_on_failures_and_resets_after_recording() -> None:
    policy = RestartPolicy(base=1.0, cap=8.0, max_restarts=100)
    waits = []
    for t in range(5):
        policy.record_start(float(t))
        waits.append(policy.delay(float(t), recorded=False))
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    policy.record_start(10.0)
    assert policy.delay(10.0, recorded=True) == 0.0


def test_restart_rate_limit_holds_a_crash_loop_back() -> None:
    policy = RestartPolicy(base=0.0, cap=0.0, max_restarts=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        policy.record_start(t)
    assert policy.delay(2.5, recorded=True) == pytest.approx(57.5)  # until the first start leaves the window
    assert policy.delay(61.0, recorded=True) == 0.0


def test_health_deadlines_follow_segment_length() -> None:
    assert stall_timeout(2) == 7.0
    assert first_segment_timeout(2) > stall_timeout(2)


def test_session_dirs_are_never_reused(tmp_path: Path) -> None:
    first = new_session_dir(tmp_path, START)
    second = new_session_dir(tmp_path, START)
    assert first.name == "20261121T062705Z" and second.name == "20261121T062705Z-1"


def test_scrubber_removes_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_PW", "p@ss word")
    camera = _camera(username="viewer", password_env="GATE_PW")
    url = camera.authenticated_url()
    scrub = SecretScrubber(camera, url)
    line = f"[rtsp @ 0x1] {url}: 401 Unauthorized (password p@ss word)"
    cleaned = scrub(line)
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned
    assert camera.rtsp_url in cleaned


def test_published_names_and_paths() -> None:
    name = published_name(42, START)
    assert name == "062705-0000000042.ts"
    assert announce.FILENAME.fullmatch(name)
    assert mfs_path("f1", "gate", START, name) == "/camswarm/f1/gate/2026/11/21/062705-0000000042.ts"


def test_announcement_and_catalog_document_agree() -> None:
    key = Ed25519PrivateKey.generate()
    producer = announce.key_id(key.public_key())
    signed = announce.sign(build_announcement(_entry(), _camera(), producer), key)
    decoded = announce.decode(announce.encode(signed), {producer: key.public_key()})
    assert decoded.seq == 7 and decoded.filename == published_name(7, START)
    media = MediaInfo("mpegts", "h264", 960, 540, 2_000_000)
    created = START + timedelta(seconds=3)
    doc = segment_document(signed, _entry(), media, created)
    assert doc["start"] == START and doc["end"] == START + timedelta(seconds=2)
    assert (doc["codec"], doc["width"], doc["sig"], doc["created_at"]) == ("h264", 960, signed.sig, created)
    # A mirror can rebuild the signed announcement from the catalog document alone.
    rebuilt = announce.from_document(doc)
    assert announce.decode(announce.encode(rebuilt), {producer: key.public_key()}) == decoded


def test_encrypted_segment_publishes_ciphertext_size_hash_and_its_key() -> None:
    key = Ed25519PrivateKey.generate()
    producer = announce.key_id(key.public_key())
    master = bytes(range(32))
    key_id = segcrypt.new_key_id()
    content = segcrypt.new_content_key()
    identity = segcrypt.key_identity("f1", "gate", key_id)
    seg_key = SegmentKey(
        key_id=key_id,
        wrapped=segcrypt.wrap(content, master, identity),
        iv="0f" * 16,
        camera="f1/gate",
        session="20261121T062700Z",
        first_seq=5,
        created_at=START.timestamp(),
    )
    entry = replace(_entry(), key_id=key_id, cipher_size=512_016, cipher_sha256="cd" * 32)
    signed = announce.sign(build_announcement(entry, _camera(encrypt=True), producer, seg_key), key)
    assert (signed.size, signed.key_id, signed.iv) == (512_016, key_id, "0f" * 16)
    doc = segment_document(signed, entry, None, START)
    assert (doc["sha256"], doc["size"], doc["key_id"], doc["iv"]) == ("cd" * 32, 512_016, key_id, "0f" * 16)
    rebuilt = announce.from_document(doc)
    assert announce.decode(announce.encode(rebuilt), {producer: key.public_key()}).key_id == key_id
    kdoc = key_document(_camera(), seg_key)
    assert kdoc["_id"] == identity and kdoc["first_seq"] == 5
    assert segcrypt.unwrap(kdoc["wrapped"], master, kdoc["_id"]) == content
    assert content.hex() not in repr(kdoc)
    with pytest.raises(ValueError, match="has key"):
        build_announcement(entry, _camera(), producer)  # an encrypted entry needs its key


def test_encrypt_file_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "seg.ts"
    path.write_bytes(b"\x47" * 188 * 3)
    key, iv = bytes(16), bytes(range(16))
    first, digest = encrypt_file(path, key, iv)
    assert encrypt_file(path, key, iv) == (first, digest)
    assert segcrypt.decrypt(first, key, iv) == path.read_bytes()


def test_announcement_needs_a_cid() -> None:
    with pytest.raises(ValueError, match="no CID"):
        build_announcement(_entry(cid=None), _camera(), "x" * 43)


def test_pin_expiry_is_start_plus_retention() -> None:
    assert pin_expiry(START, 30) == START + timedelta(days=30)


FFPROBE = {
    "streams": [
        {"codec_type": "video", "codec_name": "h264", "width": 960, "height": 540},
        {"codec_type": "audio", "codec_name": "aac"},
    ],
    "format": {"format_name": "mpegts", "bit_rate": "2043112"},
}


def test_probe_report_is_parsed() -> None:
    assert parse_probe(FFPROBE) == MediaInfo("mpegts", "h264", 960, 540, 2043112, "aac")
    assert MediaInfo.from_json(parse_probe(FFPROBE).to_json()) == parse_probe(FFPROBE)


@pytest.mark.parametrize(
    "report",
    [{}, {"streams": [], "format": {}}, {"streams": [{"codec_type": "audio"}], "format": {}}],
    ids=["empty", "no-streams", "audio-only"],
)
def test_probe_without_video_is_an_error(report: dict[str, object]) -> None:
    with pytest.raises(ProbeError):
        parse_probe(report)


def test_devnet_producer_config_is_a_valid_producer_config(tmp_path: Path) -> None:
    text = producer_config(
        kubo_api="http://127.0.0.1:5001",
        cluster_api="http://127.0.0.1:9094",
        catalog="mongodb://127.0.0.1:27017/",
        topic="camswarm/segments/v1",
        state_dir=str(tmp_path / 'st"ate'),
        admin_port=9180,
        cameras=[
            ProducerCamera("factory1", "cam1", "rtsp://127.0.0.1:8554/cam1", encrypt=True),
            ProducerCamera("factory2", "cam2", "rtsp://127.0.0.1:8554/cam2"),
        ],
        replication=(2, 3),
        period_s=60,
        master_key_file=str(tmp_path / "master.key"),
    )
    path = tmp_path / "producer.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.node.state_dir == tmp_path / 'st"ate'
    assert config.node.master_key_file == str(tmp_path / "master.key")
    assert (config.anchoring.period_s, config.anchoring.close_delay_s) == (60, 8.0)
    assert [(c.key, c.replication_min, c.replication_max, c.encrypt) for c in config.cameras] == [
        ("factory1/cam1", 2, 3, True),
        ("factory2/cam2", 2, 3, False),
    ]
