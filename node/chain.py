"""Client of the FootageRegistry contract: anchor period roots, read them back, list events.

The contract (contracts/FootageRegistry.sol) keeps one write-once record per
(factory, device, period start); the artifact it is deployed from is the committed
contracts/FootageRegistry.json, rebuilt and checked by contracts/compile.cjs.

Sync web3 on one worker thread, not AsyncWeb3: eth-tester (the in-process chain of
the unit tests) only exists as a sync provider worth trusting, and anvil or any other
node is a plain HTTP JSON-RPC endpoint either way. Every RPC call runs on a
single-thread executor owned by the client, so calls are serialised (eth-tester is not
thread-safe), each is bounded by the HTTP timeout, and the event loop never blocks.

Retry policy is the caller's, decided by type: ``ChainError`` (node unreachable, slow,
or answering with an RPC error) is transient; ``AnchorConflict`` (the chain holds a
different root) and ``RegistryRejected`` (the contract refused) are not. A submit is
idempotent: it reads before it sends, and the contract refuses a second anchor of a key,
so a retry after a lost receipt never anchors twice.

The private key only ever lives inside an eth_account ``LocalAccount``; it is never
logged, never in a repr and never in an exception message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxParams, TxReceipt

from node.errors import DaemonError
from node.logs import kv
from node.toolchain import REPO_ROOT, ToolMissing, require

log = logging.getLogger("camswarm.chain")

ARTIFACT_PATH = REPO_ROOT / "contracts" / "FootageRegistry.json"
ANVIL_VERSION = "1.7.1"  # pinned by contracts/package-lock.json
MAX_ROOT_BYTES = 64  # FootageRegistry.MAX_ROOT_LENGTH
LOG_PAGE_BLOCKS = 5000  # blocks per eth_getLogs call; public nodes cap the range
_UINT32 = 2**32
_UINT64 = 2**64

# `anvil` with its default mnemonic ("test test ... junk") funds these accounts; the
# first is the deployer of the devnet. Well known, for local chains only.
ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
)
ANVIL_CHAIN_ID = 31337

T = TypeVar("T")


class ChainError(DaemonError):
    """The Ethereum node did not answer, answered too late, or returned an RPC error."""


class AnchorConflict(Exception):
    """The chain already holds a different anchor for the key: tamper or bug, never retried."""

    def __init__(self, existing: AnchorRecord, root: bytes, period_seconds: int) -> None:
        super().__init__(
            f"{existing.factory}/{existing.device} period {existing.period_start} is anchored with root "
            f"{existing.root.hex()} ({existing.period_seconds} s), not {root.hex()} ({period_seconds} s)"
        )
        self.existing = existing


class RegistryRejected(Exception):
    """The contract refused the call (not authorised, bad input, reverted transaction)."""


@dataclass(frozen=True)
class Artifact:
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: str
    immutable_ranges: tuple[tuple[int, int], ...] = ()  # (start, length) filled in at deploy

    def runtime_matches(self, code: bytes) -> bool:
        """Whether on-chain ``code`` is this artifact's runtime code (immutables masked)."""
        masked = bytearray(code)
        for start, length in self.immutable_ranges:
            masked[start : start + length] = bytes(length)
        return bytes(masked) == bytes.fromhex(self.deployed_bytecode.removeprefix("0x"))


@dataclass(frozen=True)
class AnchorRecord:
    factory: str
    device: str
    period_start: int  # unix seconds
    period_seconds: int
    root: bytes
    anchored_at: int  # unix seconds (block timestamp)
    submitter: str  # checksum address
    tx_hash: str | None = None  # known when the record comes from a transaction or an event
    block_number: int | None = None


def load_artifact(path: Path = ARTIFACT_PATH) -> Artifact:
    """The committed contract artifact (ABI and bytecode)."""
    data = json.loads(path.read_text())
    return Artifact(
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler=data["compiler"]["version"],
        immutable_ranges=tuple((start, length) for start, length in data["immutableRanges"]),
    )


def anvil_binary() -> Path:
    """The anvil executable from contracts/node_modules (npm platform package)."""
    os_name = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    package = f"anvil-{os_name}-{arch}"
    path = REPO_ROOT / "contracts" / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
    if os_name is None or arch is None or not path.exists():
        raise ToolMissing(
            f"anvil not found at {path}; run `make deps` (contracts/package.json pins "
            f"@foundry-rs/anvil-linux-amd64 {ANVIL_VERSION}; other platforms need their "
            f"@foundry-rs/{package} package added there)"
        )
    return require(path)


def anvil_argv(
    binary: Path, port: int, *, chain_id: int = ANVIL_CHAIN_ID, host: str = "127.0.0.1"
) -> list[str]:
    """argv of an anvil listening on ``host`` only (loopback by default) with the dev accounts."""
    return [str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id), "--quiet"]


def _account(private_key: str) -> LocalAccount:
    try:
        account: LocalAccount = Account.from_key(private_key)
    except Exception:
        # `from None`: the original message may quote the key
        raise ValueError("private key is not a 32-byte hex string") from None
    return account


def _redacted(url: str) -> str:
    """scheme://host:port of an RPC URL: hosted endpoints carry API keys in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class _Node:
    """A web3 instance whose calls run on one worker thread and fail as ChainError."""

    def __init__(self, rpc: str | Web3, timeout: float) -> None:
        self._session: requests.Session | None = None
        if isinstance(rpc, Web3):
            self.w3 = rpc
            self.url = type(rpc.provider).__name__
        else:
            self._session = requests.Session()
            # No provider-level retries: retry policy belongs to the caller.
            provider = HTTPProvider(
                rpc,
                request_kwargs={"timeout": timeout},
                session=self._session,
                exception_retry_configuration=None,
            )
            self.w3 = Web3(provider)
            self.url = _redacted(rpc)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camswarm-chain")
        self._chain_id: int | None = None

    async def chain_id(self) -> int:
        """The chain's EIP-155 id, asked once: a node does not change chains."""
        if self._chain_id is None:
            self._chain_id = int(await self.call(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def error(self, detail: str) -> ChainError:
        return ChainError("ethereum", self.url, detail)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args))
        except requests.Timeout as exc:
            raise self.error("no answer in time") from exc
        except (requests.ConnectionError, ProviderConnectionError) as exc:
            # Type names only: requests' messages quote the URL, which may hold an API key.
            raise self.error(f"unreachable: {type(exc).__name__}") from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise self.error(f"HTTP {status}") from exc
        except requests.RequestException as exc:
            raise self.error(f"request failed: {type(exc).__name__}") from exc
        except (ContractLogicError, TransactionNotFound):
            # The node answered: a revert is the contract's verdict, and a receipt not found yet
            # means "not mined yet" to the caller polling for it; neither is a chain failure.
            raise
        except Web3RPCError as exc:
            raise self.error(exc.message) from exc

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._session is not None:
            self._session.close()


class _Signer:
    """Signs locally and sends; nonces handed out under a lock so concurrent sends don't collide."""

    def __init__(self, node: _Node, private_key: str) -> None:
        self._node = node
        self._account = _account(private_key)
        self.address: str = self._account.address
        self._lock = asyncio.Lock()
        self._next_nonce: int | None = None

    async def _fees(self) -> dict[str, int]:
        w3 = self._node.w3
        block = await self._node.call(w3.eth.get_block, "latest")
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:  # pre-London chain
            return {"gasPrice": await self._node.call(lambda: w3.eth.gas_price)}
        tip = await self._node.call(lambda: w3.eth.max_priority_fee)
        # Twice the base fee survives six full blocks of +12.5% before the tx stalls.
        return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}

    async def send(self, data: str, to: str | None = None) -> str:
        """Sign a call of ``data`` (a deployment when ``to`` is None) and send it; its hash."""
        w3 = self._node.w3
        async with self._lock:
            pending = await self._node.call(w3.eth.get_transaction_count, self.address, "pending")
            # The node's pending count can lag a transaction it just accepted.
            nonce = max(pending, self._next_nonce or 0)
            tx: dict[str, Any] = {
                "from": self.address,
                "data": data,
                "nonce": nonce,
                "chainId": await self._node.chain_id(),
            }
            if to is not None:
                tx["to"] = to
            tx.update(await self._fees())
            gas = await self._node.call(w3.eth.estimate_gas, cast(TxParams, tx))
            tx["gas"] = gas + gas // 5  # margin for a node whose estimate is a little short
            signed = self._account.sign_transaction(tx)
            try:
                tx_hash = await self._node.call(w3.eth.send_raw_transaction, signed.raw_transaction)
            except ChainError:
                self._next_nonce = None  # unknown whether it was taken: ask the node next time
                raise
            self._next_nonce = nonce + 1
        return "0x" + bytes(tx_hash).hex()

    async def receipt(self, tx_hash: str, timeout: float, poll: float) -> TxReceipt:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self._node.call(self._node.w3.eth.get_transaction_receipt, HexStr(tx_hash))
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                raise self._node.error(f"transaction {tx_hash} not mined within {timeout:g} s")
            await asyncio.sleep(poll)


class _Errors:
    """Custom errors of the ABI by selector, to name a revert."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str]]] = {}
        for entry in abi:
            if entry.get("type") == "error":
                types = [item["type"] for item in entry["inputs"]]
                selector = Web3.keccak(text=f"{entry['name']}({','.join(types)})")[:4]
                self._by_selector[bytes(selector)] = (entry["name"], types)

    def describe(self, exc: Exception) -> str:
        data = exc.data if isinstance(exc, ContractLogicError) else None
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            raw = bytes.fromhex(data[2:])
            found = self._by_selector.get(raw[:4])
            if found is not None:
                name, types = found
                values = abi_decode(types, raw[4:])
                shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
                return f"{name}({shown})"
        return str(exc)[:300]


def _is_revert(exc: Exception) -> bool:
    # eth-tester's TransactionFailed is matched by name: node/ must not import a test dependency.
    return isinstance(exc, ContractLogicError) or type(exc).__name__ == "TransactionFailed"


def _check_anchor(factory: str, device: str, period_start: int, period_seconds: int, root: bytes) -> None:
    if not factory or not device:
        raise ValueError("factory and device must be non-empty")
    if not 0 <= period_start < _UINT64:
        raise ValueError(f"period_start {period_start} outside uint64")
    if not 0 < period_seconds < _UINT32:
        raise ValueError(f"period_seconds {period_seconds} must be in 1..{_UINT32 - 1}")
    if not 0 < len(root) <= MAX_ROOT_BYTES:
        raise ValueError(f"root is {len(root)} bytes; the registry takes 1..{MAX_ROOT_BYTES}")


class Registry:
    """One deployed FootageRegistry, reached over ``rpc`` (a JSON-RPC URL or a Web3).

    ``private_key`` (hex) is needed only to submit; reads and events work without one.
    """

    def __init__(
        self,
        rpc: str | Web3,
        address: str,
        private_key: str | None = None,
        *,
        timeout: float = 10.0,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.5,
        artifact: Artifact | None = None,
    ) -> None:
        art = artifact or load_artifact()
        self._node = _Node(rpc, timeout)
        self.address = Web3.to_checksum_address(address)
        self._contract: Contract = self._node.w3.eth.contract(address=self.address, abi=art.abi)
        self._artifact = art
        self._errors = _Errors(art.abi)
        self._signer = _Signer(self._node, private_key) if private_key is not None else None
        self._receipt_timeout = receipt_timeout
        self._poll = poll_interval

    def __repr__(self) -> str:
        sender = self._signer.address if self._signer else None
        return f"Registry(rpc={self._node.url!r}, address={self.address!r}, sender={sender!r})"

    @property
    def sender(self) -> str | None:
        """Address transactions are sent from (derived from the key), None when read-only."""
        return self._signer.address if self._signer else None

    async def code_matches(self) -> bool:
        """Whether the code at ``address`` is the committed FootageRegistry artifact."""
        code = await self._node.call(self._node.w3.eth.get_code, self.address)
        return self._artifact.runtime_matches(bytes(code))

    async def chain_id(self) -> int:
        """The chain's EIP-155 id: proofs name it, so a proof checked on another chain fails."""
        return await self._node.chain_id()

    async def block_number(self) -> int:
        return await self._node.call(lambda: self._node.w3.eth.block_number)

    async def read(self, factory: str, device: str, period_start: int) -> AnchorRecord | None:
        """The anchor of a period, or None when the period is not anchored."""
        call = self._contract.functions.rootOf(factory, device, period_start).call
        root, period_seconds, anchored_at, submitter = await self._node.call(call)
        if not root:
            return None
        return AnchorRecord(
            factory, device, period_start, period_seconds, bytes(root), anchored_at, submitter
        )

    async def is_authorised(self, account: str) -> bool:
        """Whether ``account`` may anchor (the owner or a submitter it set)."""
        owner = await self._node.call(self._contract.functions.owner().call)
        if Web3.to_checksum_address(account) == owner:
            return True
        allowed: bool = await self._node.call(self._contract.functions.isSubmitter(account).call)
        return allowed

    async def submit(
        self, factory: str, device: str, period_start: int, period_seconds: int, root: bytes
    ) -> AnchorRecord:
        """Anchor ``root`` for the period, or return the identical anchor already there."""
        _check_anchor(factory, device, period_start, period_seconds, root)
        signer = self._require_signer()
        existing = await self.read(factory, device, period_start)
        if existing is not None:
            return _same_or_conflict(existing, root, period_seconds)
        if not await self.is_authorised(signer.address):
            raise RegistryRejected(f"{signer.address} is not an authorised submitter of {self.address}")
        data = self._contract.encode_abi("anchor", [factory, device, period_start, period_seconds, root])
        label = f"{factory}/{device} period {period_start}"
        try:
            tx_hash = await signer.send(data, self.address)
        except ChainError:
            raise
        except Exception as exc:
            # Refused at gas estimation (which runs the call), most likely because a
            # concurrent submitter anchored the key first. JSON-RPC nodes report the revert
            # as ContractLogicError; eth-tester raises its own TransactionFailed.
            return await self._after_revert(label, factory, device, period_start, period_seconds, root, exc)
        receipt = await signer.receipt(tx_hash, self._receipt_timeout, self._poll)
        if receipt["status"] != 1:
            failure = RegistryRejected(f"anchor transaction {tx_hash} for {label} reverted")
            return await self._after_revert(
                label, factory, device, period_start, period_seconds, root, failure
            )
        block = await self._node.call(self._node.w3.eth.get_block, receipt["blockNumber"])
        record = AnchorRecord(
            factory,
            device,
            period_start,
            period_seconds,
            root,
            block["timestamp"],
            signer.address,
            tx_hash,
            receipt["blockNumber"],
        )
        log.info(
            "anchored",
            extra=kv(
                camera=f"{factory}/{device}", period_start=period_start, tx=tx_hash, block=record.block_number
            ),
        )
        return record

    async def _after_revert(
        self,
        label: str,
        factory: str,
        device: str,
        period_start: int,
        period_seconds: int,
        root: bytes,
        exc: Exception,
    ) -> AnchorRecord:
        existing = await self.read(factory, device, period_start)
        if existing is not None:
            return _same_or_conflict(existing, root, period_seconds)
        if isinstance(exc, RegistryRejected):
            raise exc
        if not _is_revert(exc):
            raise exc  # not a revert: a bug, let it show as itself
        raise RegistryRejected(f"registry refused to anchor {label}: {self._errors.describe(exc)}") from exc

    async def set_submitter(self, account: str, allowed: bool = True) -> str:
        """Owner only: allow or revoke ``account``; the transaction hash."""
        signer = self._require_signer()
        data = self._contract.encode_abi("setSubmitter", [Web3.to_checksum_address(account), allowed])
        try:
            tx_hash = await signer.send(data, self.address)
        except ChainError:
            raise
        except Exception as exc:
            if not _is_revert(exc):
                raise
            raise RegistryRejected(f"setSubmitter refused: {self._errors.describe(exc)}") from exc
        receipt = await signer.receipt(tx_hash, self._receipt_timeout, self._poll)
        if receipt["status"] != 1:
            raise RegistryRejected(f"setSubmitter transaction {tx_hash} reverted")
        return tx_hash

    async def events(
        self, from_block: int, to_block: int | None = None, *, page_blocks: int = LOG_PAGE_BLOCKS
    ) -> list[AnchorRecord]:
        """Anchored events in [from_block, to_block] (None: the latest block), in chain order.

        One eth_getLogs call per ``page_blocks`` blocks: public nodes refuse wide ranges.
        """
        last = await self.block_number() if to_block is None else to_block
        event = self._contract.events.Anchored()
        records: list[AnchorRecord] = []
        timestamps: dict[int, int] = {}
        w3 = self._node.w3
        for start in range(from_block, last + 1, page_blocks):
            end = min(start + page_blocks - 1, last)
            logs = await self._node.call(
                lambda a=start, b=end: list(event.get_logs(from_block=a, to_block=b))
            )
            for item in logs:
                args = item["args"]
                number = item["blockNumber"]
                if number not in timestamps:
                    timestamps[number] = (await self._node.call(w3.eth.get_block, number))["timestamp"]
                records.append(
                    AnchorRecord(
                        args["factory"],
                        args["device"],
                        args["periodStart"],
                        args["periodSeconds"],
                        bytes(args["root"]),
                        timestamps[number],
                        args["submitter"],
                        "0x" + bytes(item["transactionHash"]).hex(),
                        number,
                    )
                )
        return records

    async def close(self) -> None:
        await self._node.close()

    def _require_signer(self) -> _Signer:
        if self._signer is None:
            raise RegistryRejected("this Registry was opened without a private key; it can only read")
        return self._signer


def _same_or_conflict(existing: AnchorRecord, root: bytes, period_seconds: int) -> AnchorRecord:
    if existing.root == root and existing.period_seconds == period_seconds:
        return existing
    raise AnchorConflict(existing, root, period_seconds)


async def deploy_registry(
    rpc: str | Web3,
    private_key: str,
    *,
    timeout: float = 10.0,
    receipt_timeout: float = 120.0,
    poll_interval: float = 0.5,
    artifact: Artifact | None = None,
) -> str:
    """Deploy a FootageRegistry owned by the key's account; its checksum address."""
    art = artifact or load_artifact()
    node = _Node(rpc, timeout)
    try:
        signer = _Signer(node, private_key)
        tx_hash = await signer.send(art.bytecode)
        receipt = await signer.receipt(tx_hash, receipt_timeout, poll_interval)
        address = receipt["contractAddress"]
        if receipt["status"] != 1 or address is None:
            raise RegistryRejected(f"deploy transaction {tx_hash} reverted")
        log.info("registry_deployed", extra=kv(address=address, tx=tx_hash, owner=signer.address))
        return Web3.to_checksum_address(address)
    finally:
        await node.close()
