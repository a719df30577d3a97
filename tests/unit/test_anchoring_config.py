"""Anchoring settings (producer and `camswarm anchor`), the anchor key file, the timeline's period marks."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.media import anchor_marks
from node.anchoring import AnchorConfig, load_config, read_private_key
from node.anchors import anchor_record
from node.config import ConfigError, parse_section
from node.keys import KeyFileError
from node.merkle import period_root
from producer.config import ProducerConfig
from tests.unit.test_merkle import CIDS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CONTRACT = "0x" + "12" * 20


def test_documented_anchor_example_loads() -> None:
    settings = load_config(REPO / "docs" / "anchor.example.toml").anchor
    assert settings.period_s == 3600 and settings.contract.startswith("0x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('contract = "0x12"', "anchor.contract: '0x12' does not match"),
        ("", "anchor.contract: is required"),
        (f'contract = "{CONTRACT}"\nperiod_s = 7000', "anchor.period_s: must divide a day"),
        (f'contract = "{CONTRACT}"\nrpc_url = "ws://x"', "anchor.rpc_url"),
        (f'contract = "{CONTRACT}"\npoll_s = 0', "anchor.poll_s: must be between"),
        (f'contract = "{CONTRACT}"\nsecret = "x"', "anchor.secret: unknown key"),
    ],
)
def test_bad_anchor_config_names_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_section(AnchorConfig, tomllib.loads("[anchor]\n" + text))
    assert str(caught.value).startswith(message), caught.value


CAMERA = '[[cameras]]\nfactory = "f"\ndevice = "d"\nrtsp_url = "rtsp://h/x"\nsegment_seconds = 4\n'


@pytest.mark.parametrize(
    ("anchoring", "message"),
    [
        ("period_s = 600", None),
        ("period_s = 3601", "anchoring.period_s: must divide a day"),
        ("period_s = 30", "anchoring.period_s: must be between 60"),
        ("close_delay_s = 9", "anchoring.close_delay_s: must be at least twice camera f/d's segment_seconds"),
        ("enabled = false\nclose_delay_s = 0", None),
    ],
)
def test_producer_anchoring_settings(anchoring: str, message: str | None) -> None:
    data = tomllib.loads(f"[anchoring]\n{anchoring}\n{CAMERA}")
    if message is None:
        parse_section(ProducerConfig, data)
        return
    with pytest.raises(ConfigError) as caught:
        parse_section(ProducerConfig, data)
    assert str(caught.value).startswith(message), caught.value


def test_anchor_key_file_is_owner_only_hex(tmp_path: Path) -> None:
    path = tmp_path / "anchor.key"
    with pytest.raises(KeyFileError, match="does not exist"):
        read_private_key(path)
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_private_key(path)
    path.chmod(0o600)
    assert read_private_key(path) == "0x" + "ab" * 32
    path.write_text("not a key " + "cd" * 32)
    with pytest.raises(KeyFileError) as caught:
        read_private_key(path)
    assert "cd" * 32 not in str(caught.value)  # never echo what might be a key


T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def record(index: int, cids: list[str]) -> dict[str, Any]:
    start = T0 + timedelta(minutes=index)
    docs = [{"seq": i, "filename": f"{i}.ts", "cid": c} for i, c in enumerate(cids)]
    return anchor_record(
        "f", "d", (start, start + timedelta(minutes=1)), docs,
        day_dir="/camswarm/f/d/2026/11/21", day_dir_cid=None, producer="p", created_at=start,
    )  # fmt: skip


def test_anchor_marks_states() -> None:
    records = [record(0, CIDS[:2]), record(1, CIDS[2:3]), record(2, CIDS[3:4]), record(3, CIDS[4:5])]
    chain = {
        records[0]["_id"]: {"root": records[0]["root"], "tx_hash": "0x1"},
        records[1]["_id"]: {"root": records[1]["root"], "tx_hash": "0x2"},
        records[3]["_id"]: {"root": "00" * 32, "tx_hash": "0x4"},  # the chain disagrees with the record
    }
    held = {T0: CIDS[:2], T0 + timedelta(minutes=1): None}

    marks = anchor_marks(records, chain, lambda start, _end: held.get(start))
    assert [m["state"] for m in marks] == ["verified", "anchored", "pending", "mismatch"]
    assert marks[0]["tx"] == "0x1" and marks[0]["root"] == period_root(CIDS[:2]).hex()
    # The store holds other segments than the anchored ones: a mismatch.
    held[T0] = CIDS[:1]
    assert anchor_marks(records[:1], chain, lambda start, _end: held.get(start))[0]["state"] == "mismatch"
