from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from node.announce import key_id
from node.keys import KeyFileError, load_or_create


def test_created_once_owner_only_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "producer.key"
    key, created = load_or_create(path)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    again, created_again = load_or_create(path)
    assert not created_again
    assert key_id(again.public_key()) == key_id(key.public_key())


def test_refuses_a_world_readable_key(tmp_path: Path) -> None:
    path = tmp_path / "producer.key"
    load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create(path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not a key", id="garbage"),
        pytest.param(
            generate_private_key(SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            id="wrong-algorithm",
        ),
    ],
)
def test_refuses_unusable_files_and_keeps_them(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "producer.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_or_create(path)
    assert path.read_bytes() == content, "an unusable key file is never overwritten"
