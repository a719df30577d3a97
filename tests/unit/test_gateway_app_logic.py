"""Gateway app pieces that need no daemon: the incremental day index, login attempts, the secret file."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Attempts, DayIndex, Gateway, compose_replay, load_or_create_secret, segment_key_uri
from gateway.config import GatewayConfig, GatewayNode
from mirror.store import StoredSegment
from node.config import ConfigError


def line(filename: str, cid: str) -> str:
    """One line of a mirror store's day index."""
    start = datetime(2026, 11, 21, 8, tzinfo=UTC)
    return StoredSegment("factory1", "cam1", 1, "20261121T080000Z", cid, filename, start, 2.0, 100).to_line()


def test_day_index_reads_only_complete_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "segments.jsonl"
    index = DayIndex(path)
    index.refresh()
    assert index.cids == {}
    b = line("b.ts", "cid-b")
    path.write_text(line("a.ts", "cid-a") + b[:30])  # b is still being appended
    index.refresh()
    assert index.cids == {"a.ts": "cid-a"}
    with open(path, "a") as handle:
        handle.write(b[30:] + "not json\n" + line("c.ts", "cid-c"))
    index.refresh()
    assert index.cids == {"a.ts": "cid-a", "b.ts": "cid-b", "c.ts": "cid-c"}


def test_day_index_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "segments.jsonl"
    path.write_text(line("a.ts", "cid-a") + line("b.ts", "cid-b"))
    index = DayIndex(path)
    index.refresh()
    replacement = tmp_path / "new.jsonl"
    replacement.write_text(line("z.ts", "cid-z"))
    os.replace(replacement, path)  # retention dropped the day, a new one began
    index.refresh()
    assert index.cids == {"z.ts": "cid-z"}
    path.unlink()
    index.refresh()
    assert index.cids == {}


def test_day_index_refreshed_from_many_threads_at_once_keeps_its_place(tmp_path: Path) -> None:
    """Playlists are composed in worker threads: concurrent refreshes must not skip lines."""
    path = tmp_path / "segments.jsonl"
    index = DayIndex(path)
    with ThreadPoolExecutor(max_workers=16) as pool:
        for round_ in range(20):
            with open(path, "a") as handle:
                handle.write("".join(line(f"{round_}-{n}.ts", f"cid-{round_}-{n}") for n in range(200)))
            start = threading.Barrier(16)

            def refresh(barrier: threading.Barrier) -> None:
                barrier.wait()
                index.refresh()

            for future in [pool.submit(refresh, start) for _ in range(16)]:
                future.result()
            assert index.offset == path.stat().st_size
            assert len(index.cids) == 200 * (round_ + 1)


def test_attempts_block_after_the_limit_and_forget_after_the_window() -> None:
    attempts = Attempts(limit=3, window=60)
    for t in (0, 1, 2):
        assert not attempts.blocked("user:bob", t)
        attempts.fail("user:bob", t)
    assert attempts.blocked("user:bob", 3)
    assert not attempts.blocked("user:alice", 3)
    assert not attempts.blocked("user:bob", 62.5)  # the first two failures left the window
    attempts.fail("user:bob", 63)
    attempts.clear("user:bob")
    assert not attempts.blocked("user:bob", 64)


def test_secret_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "link.secret"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("short\n")
    with pytest.raises(ValueError, match="link secret"):
        load_or_create_secret(path)


def _offline_gateway(tmp_path: Path) -> Gateway:
    """A gateway with no users and a catalog nothing listens on: for requests that never reach it."""
    users = tmp_path / "users.json"
    users.write_text('{"version": 1, "users": {}}')
    users.chmod(0o600)
    node = GatewayNode(
        store_dir=tmp_path,
        users_file=users,
        secret_file=tmp_path / "secret",
        catalog="mongodb://127.0.0.1:1/",
    )
    return Gateway(GatewayConfig(node=node))


async def test_aiohttp_errors_keep_their_status_as_json(tmp_path: Path) -> None:
    """A wrong method or an unknown path: the status aiohttp chose (405 with Allow, 404), as JSON."""
    gateway = _offline_gateway(tmp_path)
    try:
        async with TestClient(TestServer(gateway.app())) as client:
            for method, path, status in (
                ("POST", "/api/me", 405),
                ("DELETE", "/api/login", 405),
                ("GET", "/no", 404),
            ):
                response = await client.request(method, path)
                assert response.status == status, (method, path)
                assert response.content_type == "application/json"
                assert "error" in await response.json()
                if status == 405:
                    assert response.headers["Allow"]
    finally:
        await gateway.close()


def _doc(seq: int, key: int | None) -> dict[str, object]:
    doc: dict[str, object] = {
        "factory": "factory1",
        "device": "cam1",
        "seq": seq,
        "session": "20261121T060000Z",
        "filename": f"060000-{seq:010d}.ts",
        "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "start": datetime(2026, 11, 21, 6, 0, 2 * seq, tzinfo=UTC),
        "duration": 2.0,
    }
    if key is not None:
        doc.update(key_id=f"k{key:022d}", iv=f"{key:032x}")
    return doc


def test_replay_lists_each_key_before_its_first_segment() -> None:
    docs = [_doc(0, 1), _doc(1, 1), _doc(2, 2), _doc(3, None)]
    text = compose_replay("factory1", "cam1", docs, secret="s" * 43, expires=2_000_000_000)
    keys = [line for line in text.splitlines() if line.startswith("#EXT-X-KEY")]
    assert keys == [
        f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/factory1/cam1/k{1:022d}",IV=0x{1:032x}',
        f'#EXT-X-KEY:METHOD=AES-128,URI="/keys/factory1/cam1/k{2:022d}",IV=0x{2:032x}',
        "#EXT-X-KEY:METHOD=NONE",
    ]
    assert segment_key_uri(_doc(0, None)) == (None, None)


async def test_key_endpoint_without_master_key_or_session(tmp_path: Path) -> None:
    """Anonymous: 401 before anything else; a gateway without master key answers 503 (not a crash)."""
    gateway = _offline_gateway(tmp_path)
    try:
        assert gateway.master_key is None
        async with TestClient(TestServer(gateway.app())) as client:
            response = await client.get(f"/keys/factory1/cam1/k{1:022d}")
            assert response.status == 401 and "error" in await response.json()
        with pytest.raises(web.HTTPServiceUnavailable):
            await gateway.content_key("factory1", "cam1", f"k{1:022d}")
        with pytest.raises(web.HTTPNotFound):
            await gateway.content_key("factory1", "cam1", "../../etc")
    finally:
        await gateway.close()


def test_unreadable_master_key_is_a_config_error(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    node = GatewayNode(
        store_dir=tmp_path,
        users_file=tmp_path / "users.json",
        secret_file=tmp_path / "secret",
        master_key_file=str(key),
    )
    with pytest.raises(ConfigError, match=r"node\.master_key_file.*chmod 600"):
        Gateway(GatewayConfig(node=node))
