from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from node.cluster import decode_allocation, decode_peer, decode_status, format_time, parse_time, pin_query


def test_pin_query_full() -> None:
    params = pin_query(
        replication_min=2,
        replication_max=3,
        name="f1/cam1/seg-1.ts",
        metadata={"device": "cam1", "factory": "f1"},
        expire_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )
    assert params == [
        ("replication-min", "2"),
        ("replication-max", "3"),
        ("name", "f1/cam1/seg-1.ts"),
        ("meta-device", "cam1"),
        ("meta-factory", "f1"),
        ("expire-at", "2026-12-01T10:00:00Z"),
    ]


def test_pin_query_defaults_replicate_everywhere() -> None:
    assert pin_query() == [("replication-min", "-1"), ("replication-max", "-1")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"replication_min": 0, "replication_max": 3}, "replication_min", id="min-zero"),
        pytest.param({"replication_min": 3, "replication_max": 2}, "exceed", id="min-above-max"),
        pytest.param({"replication_min": 1, "replication_max": 0}, "replication_max", id="max-zero"),
        pytest.param({"replication_min": -1, "replication_max": 2}, "everywhere", id="mixed"),
        pytest.param({"metadata": {"bad key": "x"}}, "metadata key", id="meta-key"),
        pytest.param({"expire_at": datetime(2026, 1, 1)}, "timezone", id="naive-expiry"),
    ],
)
def test_pin_query_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pin_query(**kwargs)  # type: ignore[arg-type]


def test_time_round_trip_and_zero() -> None:
    moment = datetime(2026, 11, 21, 6, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-11-21T04:00:01Z"
    assert parse_time("2026-11-21T04:00:01.123456789Z") == datetime(2026, 11, 21, 4, 0, 1, 123456, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(None) is None


def test_decoders() -> None:
    status = decode_status(
        {
            "cid": "b1",
            "name": "n",
            "peer_map": {
                "p1": {"peername": "producer", "status": "pinned"},
                "p2": {"peername": "mirror1", "status": "pinning"},
            },
        }
    )
    assert status.peers_with("pinned") == {"p1"}
    alloc = decode_allocation(
        {
            "cid": "b1",
            "allocations": ["p1", "p2"],
            "replication_factor_min": 2,
            "replication_factor_max": 3,
            "expire_at": "2026-12-01T10:00:00Z",
            "metadata": {"k": "v"},
            "name": "n",
        }
    )
    assert alloc.allocations == ["p1", "p2"] and alloc.expire_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
    peer = decode_peer({"id": "c1", "peername": "producer", "ipfs": {"id": "k1"}})
    assert (peer.id, peer.peername, peer.ipfs_id, peer.error) == ("c1", "producer", "k1", "")
