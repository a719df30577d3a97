"""FootageRegistry contract and its client (node/chain.py) on eth-tester's in-process chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from mirror.verify import verify_proof
from node.anchors import ProofError
from node.chain import (
    AnchorConflict,
    AnchorRecord,
    Registry,
    RegistryRejected,
    deploy_registry,
    load_artifact,
)
from tests.unit.test_anchors import proof_fixture

pytestmark = pytest.mark.unit

# eth-tester's funded accounts are the keys 1, 2, ... (its first two accounts).
OWNER_KEY = "0x" + "00" * 31 + "01"
OTHER_KEY = "0x" + "00" * 31 + "02"
ROOT = bytes(range(32))
OTHER_ROOT = bytes(range(1, 33))


@pytest.fixture(scope="module")
def w3() -> Web3:
    return Web3(EthereumTesterProvider())


@pytest.fixture
async def address(w3: Web3) -> str:
    return await deploy_registry(w3, OWNER_KEY, poll_interval=0.01)


@pytest.fixture
async def registry(w3: Web3, address: str) -> AsyncIterator[Registry]:
    reg = Registry(w3, address, OWNER_KEY, poll_interval=0.01)
    yield reg
    await reg.close()


@pytest.fixture
async def other(w3: Web3, address: str) -> AsyncIterator[Registry]:
    reg = Registry(w3, address, OTHER_KEY, poll_interval=0.01)
    yield reg
    await reg.close()


def nonce(w3: Web3, registry: Registry) -> int:
    assert registry.sender is not None
    return w3.eth.get_transaction_count(Web3.to_checksum_address(registry.sender), "pending")


async def test_deploy_puts_the_committed_runtime_code_on_chain(
    w3: Web3, address: str, registry: Registry
) -> None:
    assert await registry.code_matches()
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    artifact = load_artifact()
    # the masked ranges are the immutable owner (read in two places): the deployer's address
    assert artifact.immutable_ranges
    for start, length in artifact.immutable_ranges:
        assert code[start : start + length] == bytes(12) + bytes.fromhex(w3.eth.accounts[0][2:])
    tampered = bytearray(code)
    tampered[-40] ^= 1
    assert not artifact.runtime_matches(bytes(tampered))


async def test_submit_then_read_back(registry: Registry) -> None:
    assert await registry.read("f1", "cam1", 1_700_000_000) is None
    record = await registry.submit("f1", "cam1", 1_700_000_000, 3600, ROOT)
    assert (record.factory, record.device, record.period_start) == ("f1", "cam1", 1_700_000_000)
    assert (record.period_seconds, record.root, record.submitter) == (3600, ROOT, registry.sender)
    assert record.tx_hash is not None and record.tx_hash.startswith("0x") and len(record.tx_hash) == 66
    assert record.block_number is not None and record.anchored_at > 0
    read = await registry.read("f1", "cam1", 1_700_000_000)
    assert read == AnchorRecord(
        "f1", "cam1", 1_700_000_000, 3600, ROOT, record.anchored_at, record.submitter, None, None
    )


async def test_resubmitting_the_same_root_sends_no_transaction(w3: Web3, registry: Registry) -> None:
    first = await registry.submit("f1", "cam1", 0, 60, ROOT)
    before = nonce(w3, registry)
    again = await registry.submit("f1", "cam1", 0, 60, ROOT)
    assert nonce(w3, registry) == before
    assert again.root == first.root and again.anchored_at == first.anchored_at


@pytest.mark.parametrize(
    ("root", "period_seconds"),
    [
        pytest.param(OTHER_ROOT, 60, id="different-root"),
        pytest.param(ROOT, 120, id="different-period-length"),
    ],
)
async def test_a_different_anchor_for_the_key_conflicts(
    w3: Web3, registry: Registry, root: bytes, period_seconds: int
) -> None:
    await registry.submit("f1", "cam1", 60, 60, ROOT)
    before = nonce(w3, registry)
    with pytest.raises(AnchorConflict, match=ROOT.hex()) as caught:
        await registry.submit("f1", "cam1", 60, period_seconds, root)
    assert caught.value.existing.root == ROOT
    assert nonce(w3, registry) == before
    assert (await registry.read("f1", "cam1", 60)) == caught.value.existing


async def test_concurrent_submits_from_one_process_take_distinct_nonces(w3: Web3, registry: Registry) -> None:
    before = nonce(w3, registry)
    records = await asyncio.gather(*(registry.submit("f1", f"cam{i}", 0, 60, ROOT) for i in range(5)))
    assert nonce(w3, registry) == before + 5
    assert len({record.tx_hash for record in records}) == 5


async def test_concurrent_submits_of_one_key_anchor_once(w3: Web3, registry: Registry) -> None:
    before = nonce(w3, registry)
    first, second = await asyncio.gather(
        registry.submit("f1", "cam1", 120, 60, ROOT), registry.submit("f1", "cam1", 120, 60, ROOT)
    )
    assert first.root == second.root == ROOT
    assert nonce(w3, registry) == before + 1
    assert len(await registry.events(0)) == 1


async def test_an_unauthorised_account_is_refused(w3: Web3, registry: Registry, other: Registry) -> None:
    before = nonce(w3, other)
    with pytest.raises(RegistryRejected, match="not an authorised submitter"):
        await other.submit("f1", "cam1", 0, 60, ROOT)
    assert nonce(w3, other) == before
    assert await registry.read("f1", "cam1", 0) is None


async def test_the_contract_itself_refuses_an_unauthorised_sender(w3: Web3, address: str) -> None:
    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact().abi)
    with pytest.raises(TransactionFailed):
        contract.functions.anchor("f1", "cam1", 0, 60, ROOT).transact({"from": w3.eth.accounts[1]})


async def test_set_submitter_authorises_and_revokes_a_second_account(
    registry: Registry, other: Registry
) -> None:
    assert other.sender is not None
    await registry.set_submitter(other.sender, True)
    record = await other.submit("f1", "cam1", 0, 60, ROOT)
    assert record.submitter == other.sender
    await registry.set_submitter(other.sender, False)
    with pytest.raises(RegistryRejected):
        await other.submit("f1", "cam1", 60, 60, ROOT)


async def test_only_the_owner_sets_submitters(other: Registry) -> None:
    assert other.sender is not None
    with pytest.raises(RegistryRejected, match="setSubmitter refused"):
        await other.set_submitter(other.sender, True)


@pytest.mark.parametrize(
    ("root", "period_seconds", "message"),
    [
        pytest.param(b"", 60, "root is 0 bytes", id="empty-root"),
        pytest.param(b"\x01" * 65, 60, "root is 65 bytes", id="root-too-long"),
        pytest.param(ROOT, 0, "period_seconds 0", id="zero-period"),
    ],
)
async def test_the_client_rejects_bad_anchors_before_sending(
    w3: Web3, registry: Registry, root: bytes, period_seconds: int, message: str
) -> None:
    before = nonce(w3, registry)
    with pytest.raises(ValueError, match=message):
        await registry.submit("f1", "cam1", 0, period_seconds, root)
    assert nonce(w3, registry) == before


@pytest.mark.parametrize(
    ("root", "period_seconds"),
    [
        pytest.param(b"", 60, id="empty-root"),
        pytest.param(b"\x01" * 65, 60, id="root-too-long"),
        pytest.param(ROOT, 0, id="zero-period"),
    ],
)
async def test_the_contract_rejects_bad_anchors(
    w3: Web3, address: str, root: bytes, period_seconds: int
) -> None:
    contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact().abi)
    with pytest.raises(TransactionFailed):
        contract.functions.anchor("f1", "cam1", 0, period_seconds, root).transact(
            {"from": w3.eth.accounts[0]}
        )
    # 64 bytes is the longest root accepted
    contract.functions.anchor("f1", "cam1", 0, 60, b"\x01" * 64).transact({"from": w3.eth.accounts[0]})


async def test_events_decode_every_anchor_with_its_transaction(w3: Web3, registry: Registry) -> None:
    start = await registry.block_number()
    submitted = [await registry.submit("f2", f"cam{i}", 3600 * i, 3600, bytes([i]) * 32) for i in range(4)]
    events = await registry.events(start)
    assert events == submitted
    for event in events:
        assert event.tx_hash is not None
        receipt = w3.eth.get_transaction_receipt(event.tx_hash)  # type: ignore[arg-type]
        assert receipt["blockNumber"] == event.block_number


async def test_paged_event_queries_return_the_same_events(registry: Registry) -> None:
    start = await registry.block_number()
    for i in range(5):
        await registry.submit("f3", "cam1", 60 * i, 60, bytes([i + 1]) * 32)
    end = await registry.block_number()
    whole = await registry.events(start, end)
    assert len(whole) == 5
    assert await registry.events(start, end, page_blocks=1) == whole
    assert await registry.events(start, end, page_blocks=2) == whole
    middle = whole[2].block_number
    assert middle is not None
    assert await registry.events(start, middle) + await registry.events(middle + 1) == whole
    assert await registry.events(end + 1) == []


async def test_reads_need_no_key(w3: Web3, address: str, registry: Registry) -> None:
    await registry.submit("f1", "cam1", 0, 60, ROOT)
    reader = Registry(w3, address)
    try:
        assert reader.sender is None
        record = await reader.read("f1", "cam1", 0)
        assert record is not None and record.root == ROOT
        with pytest.raises(RegistryRejected, match="without a private key"):
            await reader.submit("f1", "cam1", 60, 60, ROOT)
    finally:
        await reader.close()


async def test_the_private_key_never_shows(w3: Web3, address: str) -> None:
    key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    reg = Registry(w3, address, key)
    try:
        for text in (repr(reg), str(reg), repr(reg.__dict__)):
            assert key[2:] not in text.lower()
            assert key[2:10] not in text.lower()
        assert reg.sender is not None and reg.sender in repr(reg)
    finally:
        await reg.close()
    with pytest.raises(ValueError, match="not a 32-byte hex string") as caught:
        Registry(w3, address, key[:-2])
    assert key[2:-2] not in str(caught.value) and caught.value.__cause__ is None


async def test_a_receipt_not_there_yet_is_waited_for_not_an_error(w3: Web3) -> None:
    """A transaction not mined yet answers "not found": the receipt wait polls on to its deadline."""
    from node.chain import ChainError, _Node, _Signer

    node = _Node(w3, timeout=5.0)
    try:
        signer = _Signer(node, OWNER_KEY)
        with pytest.raises(ChainError, match=r"not mined within 0\.2 s"):
            await signer.receipt("0x" + "ab" * 32, 0.2, 0.01)
    finally:
        await node.close()


async def test_a_proof_names_its_chain_and_is_refused_on_another(
    w3: Web3, registry: Registry, tmp_path: Path
) -> None:
    assert await registry.chain_id() == w3.eth.chain_id
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")
    proof = {**proof_fixture(), "contract": registry.address, "chain_id": w3.eth.chain_id + 1}
    with pytest.raises(ProofError, match=f"names chain {w3.eth.chain_id + 1}; the RPC serves chain"):
        await verify_proof(registry, proof, clip, trusted_contract=registry.address)
    proof["chain_id"] = w3.eth.chain_id  # the right chain: the proof is checked (nothing anchored)
    lines = await verify_proof(registry, proof, clip, trusted_contract=registry.address)
    assert [line.status for line in lines][-2:] == ["UNANCHORED", "UNANCHORED"]
