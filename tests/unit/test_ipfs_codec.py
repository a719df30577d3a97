from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import BadCID
from node.ipfs_codec import decode_pubsub_message, encode_topic, multibase_decode, multibase_encode, parse_cid


@given(st.binary(max_size=2048))
def test_multibase_round_trip(data: bytes) -> None:
    encoded = multibase_encode(data)
    assert encoded.startswith("u")
    assert "=" not in encoded
    assert multibase_decode(encoded) == data


def test_topic_is_base64url_multibase() -> None:
    assert encode_topic("camswarm/segments/v1") == "uY2Ftc3dhcm0vc2VnbWVudHMvdjE"
    with pytest.raises(ValueError, match="empty"):
        encode_topic("")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("mAAEC", id="base64-std"),
    ],
)
def test_multibase_other_prefixes(text: str) -> None:
    assert multibase_decode(text) == b"\x00\x01\x02"


@pytest.mark.parametrize("text", ["", "xabc", "u!!!"])
def test_multibase_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"multibase|base64url"):
        multibase_decode(text)


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", id="v0"),
        pytest.param("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", id="v1-raw"),
        pytest.param("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", id="v1-dag-pb"),
        pytest.param(
            "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8", id="v1-libp2p-key-base36"
        ),
    ],
)
def test_parse_cid_accepts(cid: str) -> None:
    assert parse_cid(cid) == cid


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param("", id="empty"),
        pytest.param("QmShort", id="v0-too-short"),
        pytest.param("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0", id="v0-bad-char"),
        pytest.param("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z", id="v1-truncated"),
        pytest.param("/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", id="path"),
        pytest.param(" bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", id="whitespace"),
        pytest.param("xyz", id="unknown-base"),
        pytest.param("../../etc/passwd", id="traversal"),
    ],
)
def test_parse_cid_rejects(cid: str) -> None:
    with pytest.raises(BadCID):
        parse_cid(cid)


def test_decode_pubsub_message() -> None:
    msg = decode_pubsub_message(
        {
            "from": "12D3KooWabc",
            "data": multibase_encode(b"\x00hi"),
            "seqno": multibase_encode(b"\x01"),
            "topicIDs": [encode_topic("t1")],
        }
    )
    assert (msg.sender, msg.data, msg.seqno, msg.topics) == ("12D3KooWabc", b"\x00hi", b"\x01", ("t1",))


def test_pubsub_message_without_data_is_empty() -> None:
    assert decode_pubsub_message({"from": "p", "seqno": "uAQ", "topicIDs": []}).data == b""
    assert decode_pubsub_message({"from": "p", "data": "u"}).data == b""


@pytest.mark.parametrize(
    "record",
    [
        pytest.param([], id="not-object"),
        pytest.param({"data": "uAA"}, id="no-from"),
        pytest.param({"from": "p", "data": 5}, id="data-not-string"),
        pytest.param({"from": "p", "data": "zz"}, id="bad-multibase"),
    ],
)
def test_pubsub_bad_records_raise(record: object) -> None:
    with pytest.raises(ValueError, match=r"pubsub record|multibase"):
        decode_pubsub_message(record)
