"""Encrypted segments end to end on the session devnet, whose factory1/cam1 is encrypted.

Only ciphertext is in IPFS; a logged-in viewer plays the camera through nginx (ffmpeg
fetches the keys with the session cookie); the key endpoint refuses anonymous and
other-factory users and is never served from a cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gateway.users import UserStore
from node import segcrypt
from node.catalog import Catalog
from node.kubo import KuboClient
from node.procs import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CAMERA = ("factory1", "cam1")
TIMEOUT = aiohttp.ClientTimeout(total=30)
OTHER_USER = ("enc-factory2", "another correct horse")


async def _login(url: str, username: str, password: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(base_url=url, timeout=TIMEOUT, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.post("/api/login", json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
    return http


def _cookie(http: aiohttp.ClientSession) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def encrypted(devnet: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
    """cam1's catalog documents once at least 12 encrypted segments (two keys) are recorded."""
    docs: list[dict[str, Any]] = []

    async def recorded() -> bool:
        async with Catalog(devnet["catalog"]) as catalog:
            docs[:] = await catalog.segments_by_seq(*CAMERA, 0, 1 << 40)
        return len([d for d in docs if d.get("key_id")]) >= 12

    await poll_until(recorded, timeout=120, what="12 encrypted segments of cam1", interval=0.5)
    yield docs


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def users(devnet: dict[str, Any]) -> AsyncIterator[dict[str, str]]:
    """The demo users' passwords, plus a client of factory2 added to the devnet's users file."""
    credentials = json.loads(Path(devnet["web"]["credentials"]).read_text())
    passwords = {name: entry["password"] for name, entry in credentials["users"].items()}
    users_file = Path(devnet["dir"]) / "users.json"
    store = UserStore(users_file)
    if store.get(OTHER_USER[0]) is None:
        await asyncio.to_thread(store.add, OTHER_USER[0], OTHER_USER[1], "client", ("factory2",), ())
    passwords[OTHER_USER[0]] = OTHER_USER[1]
    yield passwords


async def test_key_rotation_and_catalog_keys(devnet: dict[str, Any], encrypted: list[dict[str, Any]]) -> None:
    keyed = [d for d in encrypted if d.get("key_id")]
    assert all(segcrypt.IV_HEX.fullmatch(d["iv"]) for d in keyed)
    runs: dict[str, list[int]] = {}
    for doc in keyed:
        runs.setdefault(doc["key_id"], []).append(doc["seq"])
    assert len(runs) >= 2, "keys rotate"
    assert all(len(seqs) <= 10 for seqs in runs.values()), "at most key_rotation_segments per key"
    async with Catalog(devnet["catalog"]) as catalog:
        for key_id in runs:
            doc = await catalog.get_key(*CAMERA, key_id)
            assert doc is not None, f"key {key_id} is in the catalog"
            assert segcrypt.WRAPPED.fullmatch(doc["wrapped"])
            assert min(runs[key_id]) >= doc["first_seq"]
    print(
        f"[keys] {len(keyed)} encrypted segments of factory1/cam1 under {len(runs)} keys: "
        + ", ".join(f"{k[:8]}..: seq {min(v)}-{max(v)}" for k, v in runs.items())
    )


async def test_ipfs_holds_only_ciphertext(devnet: dict[str, Any], encrypted: list[dict[str, Any]]) -> None:
    doc = next(d for d in reversed(encrypted) if d.get("key_id"))
    async with KuboClient(devnet["nodes"]["mirror1"]["kubo_api"], timeout=30) as kubo:
        data = await kubo.cat(doc["cid"])
    assert len(data) == doc["size"] and len(data) % 16 == 0
    assert hashlib.sha256(data).hexdigest() == doc["sha256"], "the catalog describes the ciphertext"
    sync_bytes = sum(1 for i in range(0, len(data), 188) if data[i] == 0x47)
    assert sync_bytes < len(data) // 188 // 2, "no MPEG-TS packet structure in what IPFS holds"
    path = Path(devnet["dir"]) / "ciphertext.ts"
    path.write_bytes(data)
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "stream=codec_name",
        "-of", "csv=p=0", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(probe.communicate(), 60)
    assert b"h264" not in out, "ffprobe finds no video in the ciphertext"
    print(
        f"[ipfs cat {doc['cid']}] {len(data)} bytes, TS sync bytes at 188-byte steps: {sync_bytes} "
        f"of {len(data) // 188}; ffprobe video streams: {out.decode().strip() or 'none'}"
    )


async def test_key_endpoint_access(
    devnet: dict[str, Any], encrypted: list[dict[str, Any]], users: dict[str, str]
) -> None:
    url = devnet["web"]["url"]
    doc = next(d for d in reversed(encrypted) if d.get("key_id"))
    path = f"/keys/{CAMERA[0]}/{CAMERA[1]}/{doc['key_id']}"
    async with aiohttp.ClientSession(base_url=url, timeout=TIMEOUT) as anonymous, anonymous.get(path) as r:
        assert r.status == 401 and "error" in await r.json()
    other = await _login(url, OTHER_USER[0], users[OTHER_USER[0]])
    try:
        async with other.get(path) as r:
            assert r.status == 403 and "error" in await r.json()
    finally:
        await other.close()
    admin = await _login(url, "demo-admin", users["demo-admin"])
    try:
        async with admin.get(path) as r:
            assert r.status == 200, await r.text()
            key = await r.read()
            assert r.headers["Cache-Control"] == "no-store, private"
            assert r.headers.getall("Cache-Control") == ["no-store, private"]
            assert "X-Cache-Status" not in r.headers
        assert len(key) == 16
        async with admin.get(path.replace(doc["key_id"], "k" + "A" * 22)) as r:
            assert r.status == 404
        # The key and IV decrypt the segment to what the producer recorded.
        async with KuboClient(devnet["nodes"]["mirror1"]["kubo_api"], timeout=30) as kubo:
            plain = segcrypt.decrypt(await kubo.cat(doc["cid"]), key, bytes.fromhex(doc["iv"]))
        assert plain[0] == 0x47 and plain[188] == 0x47
        outbox = Path(devnet["producer"]["state_dir"]) / "outbox.sqlite3"
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
            (recorded,) = db.execute(
                "SELECT sha256 FROM segments WHERE camera=? AND seq=?", ("/".join(CAMERA), doc["seq"])
            ).fetchone()
        assert hashlib.sha256(plain).hexdigest() == recorded
        print(
            f"[key endpoint] anonymous 401, factory2 client 403, admin 200 ({len(key)} bytes, "
            f"Cache-Control: no-store, private), unknown key 404; decrypted sha256 {recorded[:16]}.. "
            "= the producer's plaintext"
        )
        # Logged out, the same request is refused again: nothing served it from a cache.
        csrf = (await (await admin.get("/api/me")).json())["csrf"]
        async with admin.post("/api/logout", headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200
        cookie = _cookie(admin)
    finally:
        await admin.close()
    async with (
        aiohttp.ClientSession(base_url=url, timeout=TIMEOUT) as again,
        again.get(path, headers={"Cookie": cookie} if cookie else {}) as r,
    ):
        assert r.status == 401
    print("[key endpoint] the same cookie after logout: 401 (nginx served nothing from a cache)")


async def test_encrypted_camera_plays_through_nginx_with_login(
    devnet: dict[str, Any], encrypted: list[dict[str, Any]], users: dict[str, str]
) -> None:
    url = devnet["web"]["url"]
    client = await _login(url, "demo-client", users["demo-client"])
    try:
        cookie = _cookie(client)
        async with client.get(f"/live/{CAMERA[0]}/{CAMERA[1]}/day.m3u8") as r:
            assert r.status == 200
            text = await r.text()
    finally:
        await client.close()
    assert '#EXT-X-KEY:METHOD=AES-128,URI="/keys/factory1/cam1/' in text
    for playlist in (f"/live/{CAMERA[0]}/{CAMERA[1]}/day.m3u8", f"/live/{CAMERA[0]}/{CAMERA[1]}.m3u8"):
        # The hls demuxer sends -headers with the playlist, segment and key requests alike.
        decode = await asyncio.create_subprocess_exec(
            "ffmpeg", "-nostdin", "-v", "error", "-headers", f"Cookie: {cookie}\r\n",
            "-i", url.rstrip("/") + playlist, "-map", "0:v", "-frames:v", "30", "-f", "framemd5", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, errors = await asyncio.wait_for(decode.communicate(), 120)
        assert decode.returncode == 0, errors.decode()[-2000:]
        frames = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
        assert len(frames) >= 10, (playlist, len(frames), errors.decode()[-2000:])
        print(f"[ffmpeg -headers Cookie -i nginx{playlist}] exit 0, {len(frames)} frames decoded")
