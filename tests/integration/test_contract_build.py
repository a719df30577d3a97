"""The committed contract artifact and a real anvil node: build check, tamper check, anchor over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account

from node.chain import (
    ANVIL_CHAIN_ID,
    ANVIL_DEV_KEYS,
    ARTIFACT_PATH,
    ChainError,
    Registry,
    anvil_argv,
    anvil_binary,
    deploy_registry,
)
from node.procs import poll_until
from node.toolchain import REPO_ROOT

pytestmark = pytest.mark.integration

CONTRACTS = REPO_ROOT / "contracts"
COMPILE = str(CONTRACTS / "compile.cjs")


def node_bin() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node not found on PATH; run `make deps`")
    return found


def run_compile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node_bin(), COMPILE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_committed_artifact_matches_its_source() -> None:
    result = run_compile("--check")
    assert result.returncode == 0, result.stderr
    assert "matches its source" in result.stdout


def test_a_one_character_source_change_changes_the_bytecode(tmp_path: Path) -> None:
    source = (CONTRACTS / "FootageRegistry.sol").read_text()
    assert source.count("MAX_ROOT_LENGTH = 64;") == 1
    tampered = tmp_path / "FootageRegistry.sol"
    tampered.write_text(source.replace("MAX_ROOT_LENGTH = 64;", "MAX_ROOT_LENGTH = 65;"))
    out = tmp_path / "FootageRegistry.json"
    result = run_compile("--source", str(tampered), "--out", str(out))
    assert result.returncode == 0, result.stderr
    built, committed = json.loads(out.read_text()), json.loads(ARTIFACT_PATH.read_text())
    assert built["bytecode"] != committed["bytecode"]
    assert built["deployedBytecode"] != committed["deployedBytecode"]
    assert built["sourceSha256"] != committed["sourceSha256"]
    # ... and --check of the committed source against that artifact fails, naming the fields
    result = run_compile("--check", "--out", str(out))
    assert result.returncode == 1
    assert "stale or altered" in result.stderr and "deployedBytecode" in result.stderr


def test_check_fails_on_an_edited_artifact(tmp_path: Path) -> None:
    artifact = json.loads(ARTIFACT_PATH.read_text())
    code = artifact["deployedBytecode"]
    artifact["deployedBytecode"] = code[:-2] + ("00" if code[-2:] != "00" else "01")  # one byte
    edited = tmp_path / "FootageRegistry.json"
    edited.write_text(json.dumps(artifact, indent=2) + "\n")
    result = run_compile("--check", "--out", str(edited))
    assert result.returncode == 1
    assert "differs in: deployedBytecode" in result.stderr


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def anvil() -> AsyncIterator[str]:
    """A fresh anvil on a free loopback port; its RPC URL. Stopped with TERM, then KILL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *anvil_argv(anvil_binary(), port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if proc.returncode is not None:
                    assert proc.stderr is not None
                    stderr = (await proc.stderr.read()).decode(errors="replace")
                    pytest.fail(f"anvil exited with {proc.returncode}: {stderr}")
                request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                try:
                    async with session.post(url, json=request) as response:
                        body = await response.json()
                except aiohttp.ClientError as exc:
                    raise OSError(str(exc)) from exc
                return bool(int(body["result"], 16) == ANVIL_CHAIN_ID)

            await poll_until(ready, timeout=15, what="anvil RPC", interval=0.05)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(Exception):
            assert proc.stderr is not None
            await proc.stderr.read()


async def test_anchor_over_http_on_anvil(anvil: str) -> None:
    owner = ANVIL_DEV_KEYS[0]
    address = await deploy_registry(anvil, owner, poll_interval=0.05)
    registry = Registry(anvil, address, owner, poll_interval=0.05)
    try:
        async with aiohttp.ClientSession() as session:
            request = {"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}
            async with session.post(anvil, json=request) as response:
                accounts = (await response.json())["result"]
        # ANVIL_DEV_KEYS are the keys of anvil's default dev accounts, in order
        expected = [Account.from_key(key).address.lower() for key in ANVIL_DEV_KEYS]
        assert [account.lower() for account in accounts[: len(expected)]] == expected
        assert registry.sender == Account.from_key(owner).address
        assert await registry.code_matches()
        start = await registry.block_number()
        root = bytes(range(32))
        record = await registry.submit("factory-1", "cam-1", 1_700_000_000, 3600, root)
        assert record.tx_hash is not None and record.block_number is not None
        again = await registry.submit("factory-1", "cam-1", 1_700_000_000, 3600, root)
        assert again.root == root and again.tx_hash is None
        events = await registry.events(start)
        assert events == [record]
        read = await registry.read("factory-1", "cam-1", 1_700_000_000)
        assert read is not None and read.root == root and read.submitter == registry.sender
        assert address in repr(registry) and owner[2:] not in repr(registry)
    finally:
        await registry.close()


async def test_an_unreachable_node_is_a_chain_error() -> None:
    registry = Registry(f"http://127.0.0.1:{free_port()}/v3/secret-api-key", "0x" + "11" * 20, timeout=2)
    try:
        with pytest.raises(ChainError, match="unreachable") as caught:
            await registry.read("f", "d", 0)
        assert "secret-api-key" not in str(caught.value)
    finally:
        await registry.close()
