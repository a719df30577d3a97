"""The gateway: login, per-camera access, playlists with signed segment links.

It runs beside a mirror's store and the catalog, behind nginx. Playlists are
served here; segment files never are: their URIs are short-lived links that
nginx checks itself (see :mod:`gateway.links`) before serving the file from the
store with sendfile, or by CID from Kubo when the store lacks it.

Encrypted cameras (HLS AES-128, see :mod:`node.segcrypt`): playlists carry
``EXT-X-KEY`` lines pointing at ``GET /keys/{factory}/{device}/{key_id}``, which
answers the 16-byte content key, unwrapped with the master key, to a viewer
allowed to see that camera, with ``Cache-Control: no-store`` (nginx never caches
it). Exports decrypt with the same keys.

Sessions live in the catalog (shared by every gateway behind one nginx). The
cookie is HttpOnly and SameSite=Strict; every state-changing request but login
must also carry the session's CSRF token in ``X-CSRF-Token``, and login must be
JSON (a cross-site form cannot send that without a CORS preflight).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from gateway import links
from gateway.config import GatewayConfig
from gateway.media import (
    BadRequest,
    anchor_marks,
    day_bounds,
    overlapping,
    parse_day,
    parse_range,
    relink,
    timeline,
)
from gateway.users import User, UserStore
from mirror.playlists import PlaylistSegment, compose_vod, key_uri
from mirror.store import DAY_PLAYLIST, INDEX, LIVE_PLAYLIST, StoredSegment
from node import keys as key_files
from node import segcrypt
from node.anchors import build_proof
from node.announce import NAME, format_start
from node.catalog import Catalog
from node.config import ConfigError
from node.errors import DaemonError
from node.files import create_private
from node.layout import day_name
from node.logs import RateLimiter, kv

log = logging.getLogger("camswarm.gateway")

COOKIE = "camswarm_session"
CSRF_HEADER = "X-CSRF-Token"
HLS = "application/vnd.apple.mpegurl"
MAX_BODY = 4096
WEB = Path(__file__).with_name("web")
# The only files /static/ serves: name -> (path under gateway/web, content type).
STATIC = {
    "app.js": ("app.js", "text/javascript"),
    "style.css": ("style.css", "text/css"),
    "hls.min.js": ("node_modules/hls.js/dist/hls.min.js", "text/javascript"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self' blob:; "
    "worker-src 'self' blob:; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
)
GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")


def _error(status: int, message: str) -> web.HTTPException:
    body = json.dumps({"error": message})
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        413: web.HTTPRequestEntityTooLarge,
        429: web.HTTPTooManyRequests,
        503: web.HTTPServiceUnavailable,
    }
    kind = kinds.get(status, web.HTTPBadRequest)
    if kind is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY, actual_size=0, text=body, content_type="application/json"
        )
    return kind(text=body, content_type="application/json")


def load_or_create_secret(path: Path) -> str:
    """The link secret shared with nginx: created once (0600), never logged."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        secret = links.new_secret()
        if not create_private(path, (secret + "\n").encode("ascii")):
            return load_or_create_secret(path)  # another gateway created it first
        return secret
    if not re.fullmatch(r"[A-Za-z0-9_-]{32,128}", text):
        raise ValueError(f"{path} does not hold a link secret (32..128 base64url characters)")
    return text


ONE_DAY = timedelta(days=1)
KEY_CACHE_SIZE = 256  # unwrapped content keys kept in memory (a key serves N segments of one camera)


def segment_key_uri(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(key URI, IV) of a catalog segment document; (None, None) for a plaintext segment."""
    key_id, iv = doc.get("key_id"), doc.get("iv")
    if not isinstance(key_id, str) or not isinstance(iv, str):
        return None, None
    return key_uri(str(doc["factory"]), str(doc["device"]), key_id), iv


T = TypeVar("T")


def _the_only(values: Iterable[T]) -> T | None:
    """The value every one of ``values`` has, None when there are none or they differ."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def compose_replay(
    factory: str, device: str, docs: Sequence[Mapping[str, Any]], *, secret: str, expires: int
) -> str:
    """The VOD playlist of catalog ``docs`` (seq order), each segment a link valid until ``expires``."""
    signer = links.Signer(factory, device, secret=secret, expires=expires)
    day, day_end = "", datetime.min.replace(tzinfo=UTC)
    segments = []
    for d in docs:
        start = d["start"]
        if not day or start >= day_end or start < day_end - ONE_DAY:  # a new UTC day: rarely
            day = day_name(start)
            day_end = datetime.fromisoformat(day).replace(tzinfo=UTC) + ONE_DAY
        uri = signer.url(day, d["filename"], d["cid"])
        key, iv = segment_key_uri(d)
        segments.append(PlaylistSegment(d["seq"], d["session"], uri, start, float(d["duration"]), key, iv))
    return compose_vod(segments)


class DayIndex:
    """filename -> CID of one store day, read incrementally as the mirror appends to it.

    Playlists are composed in worker threads, so refreshes are serialized: two threads reading
    from the same offset would both advance it and skip lines (seen under 200 polling clients).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.inode = -1
        self.cids: dict[str, str] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.offset, self.inode, self.cids = 0, -1, {}
            return
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.offset, self.inode, self.cids = 0, st.st_ino, {}
        if st.st_size == self.offset:
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(st.st_size - self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being appended waits
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                segment = StoredSegment.from_line(line)
            except (ValueError, KeyError, TypeError):  # as Store.read_day: a bad line is skipped
                continue
            self.cids[segment.filename] = segment.cid


@dataclass
class Attempts:
    """Failed logins per key within a sliding window."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def blocked(self, key: str, now: float) -> bool:
        times = self._seen.get(key)
        if not times:
            return False
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) >= self.limit

    def fail(self, key: str, now: float) -> None:
        self._seen.setdefault(key, deque()).append(now)
        if len(self._seen) > 100_000:  # bounded memory under a spray of names
            self._seen.pop(next(iter(self._seen)))

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)


class Gateway:
    def __init__(self, config: GatewayConfig, *, clock: Callable[[], float] = time.time) -> None:
        node = config.node
        self.config = config
        self.clock = clock
        self.users = UserStore(node.users_file)
        self.catalog = Catalog(node.catalog, node.catalog_db)
        self.secret = load_or_create_secret(node.secret_file)
        self.store = node.store_dir
        self.master_key = _master_key(node.master_key_file)
        self.content_keys: OrderedDict[str, bytes] = OrderedDict()
        self.attempts = Attempts(node.login_attempts, node.login_window_s)
        self.days: dict[tuple[str, str, str], DayIndex] = {}
        self.limiter = RateLimiter(30.0)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "camswarm_gateway_requests",
            "Requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "camswarm_gateway_request_seconds", "Request handling time", ["route"], registry=self.registry
        )

    # --- sessions ------------------------------------------------------------------------------

    @staticmethod
    def _session_key(token: str) -> str:
        return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()

    async def session(self, request: web.Request) -> tuple[User, dict[str, Any]] | None:
        token = request.cookies.get(COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{20,100}", token):
            return None
        doc = await self.catalog.get_session(self._session_key(token))
        if doc is None:
            return None
        expires = doc.get("expires")
        if not isinstance(expires, datetime) or expires.timestamp() < self.clock():
            return None
        user = self.users.get(str(doc.get("username")))
        if user is None:  # removed since logging in
            return None
        return user, doc

    async def require_user(self, request: web.Request) -> User:
        found = await self.session(request)
        if found is None:
            raise _error(401, "not logged in")
        user, doc = found
        if request.method not in ("GET", "HEAD"):
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), str(doc.get("csrf", "")).encode()):
                raise _error(403, f"missing or wrong {CSRF_HEADER} header")
        return user

    async def require_camera(self, request: web.Request) -> tuple[User, str, str]:
        user = await self.require_user(request)
        factory, device = request.match_info["factory"], request.match_info["device"]
        if not (NAME.fullmatch(factory) and NAME.fullmatch(device)):
            raise _error(404, "no such camera")
        if not user.may_see(factory, device):
            raise _error(403, f"{user.username} may not watch {factory}/{device}")
        if await self.catalog.camera_state(factory, device) is None:
            raise _error(404, f"no camera {factory}/{device}")
        return user, factory, device

    # --- handlers: account ---------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise _error(400, "login takes a JSON body {username, password}")
        try:
            body = json.loads(await request.text())
            username, password = body["username"], body["password"]
            if not isinstance(username, str) or not isinstance(password, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _error(400, "login takes a JSON body {username, password}") from None
        now = time.monotonic()
        client = request.remote or "?"
        keys = (f"user:{username.lower()[:64]}", f"client:{client}")
        if any(self.attempts.blocked(k, now) for k in keys):
            raise _error(429, "too many failed logins; try again later")
        user = await asyncio.to_thread(self.users.authenticate, username, password)
        if user is None:
            for key in keys:
                self.attempts.fail(key, now)
            allowed, _ = self.limiter.allow("login_failed")
            if allowed:
                log.warning("login_failed", extra=kv(client=client))
            raise _error(401, "wrong username or password")
        for key in keys:
            self.attempts.clear(key)
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        ttl = timedelta(hours=self.config.node.session_ttl_h)
        expires = datetime.fromtimestamp(self.clock(), UTC) + ttl
        await self.catalog.put_session(
            self._session_key(token), {"username": user.username, "csrf": csrf, "expires": expires}
        )
        # An expired session is refused when read; its document goes here, at the next login.
        with contextlib.suppress(DaemonError):
            await self.catalog.delete_sessions_before(datetime.fromtimestamp(self.clock(), UTC))
        log.info("login", extra=kv(user=user.username, client=client))
        response = web.json_response(self._me(user, csrf))
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(ttl.total_seconds()),
            httponly=True,
            samesite="Strict",
            secure=self.config.node.secure_cookies,
            path="/",
        )
        return response

    @staticmethod
    def _me(user: User, csrf: str) -> dict[str, Any]:
        return {
            "username": user.username,
            "role": user.role,
            "factories": list(user.factories),
            "cameras": list(user.cameras),
            "csrf": csrf,
        }

    async def logout(self, request: web.Request) -> web.Response:
        await self.require_user(request)
        await self.catalog.delete_session(self._session_key(request.cookies.get(COOKIE, "")))
        response = web.json_response({"logged_out": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        found = await self.session(request)
        if found is None:
            raise _error(401, "not logged in")
        user, doc = found
        return web.json_response(self._me(user, str(doc.get("csrf", ""))))

    async def cameras(self, request: web.Request) -> web.Response:
        user = await self.require_user(request)
        result = []
        for doc in await self.catalog.list_cameras():
            factory, device = doc.get("factory"), doc.get("device")
            if (
                not isinstance(factory, str)
                or not isinstance(device, str)
                or not user.may_see(factory, device)
            ):
                continue
            last_end = doc.get("last_end")
            result.append(
                {
                    "factory": factory,
                    "device": device,
                    "last_start": _instant(doc.get("last_start")),
                    "last_end": _instant(last_end),
                    "live": isinstance(last_end, datetime) and self.clock() - last_end.timestamp() < 30,
                    "live_url": f"/live/{factory}/{device}.m3u8",
                }
            )
        return web.json_response({"cameras": result})

    # --- handlers: keys ------------------------------------------------------------------------

    async def content_key(self, factory: str, device: str, key_id: str) -> bytes:
        """A segment's content key, unwrapped (a small LRU); 404 unknown, 503 no master key."""
        if not segcrypt.KEY_ID.fullmatch(key_id):
            raise _error(404, "no such key")
        identity = segcrypt.key_identity(factory, device, key_id)
        cached = self.content_keys.get(identity)
        if cached is not None:
            self.content_keys.move_to_end(identity)
            return cached
        if self.master_key is None:
            raise _error(503, "this gateway has no master_key_file: encrypted cameras cannot be played here")
        doc = await self.catalog.get_key(factory, device, key_id)
        if doc is None or not isinstance(doc.get("wrapped"), str):
            raise _error(404, f"no key {key_id} for {factory}/{device}")
        try:
            key = segcrypt.unwrap(doc["wrapped"], self.master_key, identity)
        except segcrypt.SegmentCryptoError as exc:
            allowed, suppressed = self.limiter.allow("key_unwrap")
            if allowed:  # the reason only: never key material
                log.error("key_unwrap_failed", extra=kv(key=identity, error=exc, suppressed=suppressed))
            raise _error(503, "this key cannot be opened with this gateway's master key") from None
        self.content_keys[identity] = key
        while len(self.content_keys) > KEY_CACHE_SIZE:
            self.content_keys.popitem(last=False)
        return key

    async def key(self, request: web.Request) -> web.Response:
        _, factory, device = await self.require_camera(request)
        key = await self.content_key(factory, device, request.match_info["key_id"])
        return web.Response(
            body=key,
            content_type="application/octet-stream",
            # Never stored by nginx or a browser cache: a key is only for a logged-in viewer.
            headers={"Cache-Control": "no-store, private", "X-Accel-Expires": "0"},
        )

    # --- handlers: media -----------------------------------------------------------------------

    def _day_index(self, factory: str, device: str, day: str) -> DayIndex:
        key = (factory, device, day)
        index = self.days.get(key)
        if index is None:
            if len(self.days) > 1024:
                self.days.clear()
            index = self.days[key] = DayIndex(self.store / factory / device / day / INDEX)
        return index

    def _cid(self, factory: str, device: str, day: str, filename: str) -> str | None:
        index = self._day_index(factory, device, day)
        if filename not in index.cids:
            index.refresh()
        return index.cids.get(filename)

    def _store_playlist(self, path: Path, factory: str, device: str, day: str | None) -> str:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _error(404, f"nothing recorded here for {factory}/{device}") from None
        expires = int(self.clock() + self.config.node.live_link_ttl_s)
        signer = links.Signer(factory, device, secret=self.secret, expires=expires)

        def link(uri: str) -> str | None:
            where, _, filename = uri.rpartition("/")
            segment_day = day or where
            cid = self._cid(factory, device, segment_day, filename)
            return None if cid is None else signer.url(segment_day, filename, cid)

        return relink(text, link)

    async def live(self, request: web.Request) -> web.Response:
        _, factory, device = await self.require_camera(request)
        path = self.store / factory / device / LIVE_PLAYLIST
        text = await asyncio.to_thread(self._store_playlist, path, factory, device, None)
        return _playlist(text, max_age=1)

    async def day(self, request: web.Request) -> web.Response:
        _, factory, device = await self.require_camera(request)
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        try:
            day = parse_day(request.query.get("day"), today).isoformat()
        except BadRequest as exc:
            raise _error(400, str(exc)) from None
        path = self.store / factory / device / day / DAY_PLAYLIST
        text = await asyncio.to_thread(self._store_playlist, path, factory, device, day)
        return _playlist(text, max_age=1 if day == today.isoformat() else 60)

    async def replay(self, request: web.Request) -> web.Response:
        _, factory, device = await self.require_camera(request)
        chosen = await self._range_docs(request, factory, device)
        span = (chosen[-1]["end"] - chosen[0]["start"]).total_seconds()
        expires = int(self.clock() + span + self.config.node.replay_link_slack_s)
        text = compose_replay(factory, device, chosen, secret=self.secret, expires=expires)
        return _playlist(text, max_age=30)

    async def _range_docs(self, request: web.Request, factory: str, device: str) -> list[Any]:
        try:
            start, end = parse_range(
                request.query.get("start"),
                request.query.get("end"),
                max_seconds=self.config.node.export_max_s,
            )
        except BadRequest as exc:
            raise _error(400, str(exc)) from None
        # A segment lasts at most a minute: one that started before `start` may still overlap it.
        docs = await self.catalog.segments_between(factory, device, start - timedelta(seconds=60), end)
        chosen = overlapping(docs, start, end)
        if not chosen:
            raise _error(404, f"nothing recorded for {factory}/{device} in that range")
        return chosen

    def _export_source(self, factory: str, device: str, docs: list[Any], key_paths: dict[str, Path]) -> str:
        """A VOD playlist for ffmpeg: local files where the store has them, else Kubo's gateway by CID.

        An encrypted segment's EXT-X-KEY points at its key in ``key_paths`` (key id -> a 0600 file
        in the export's private temporary directory), so ffmpeg decrypts while it copies.
        """
        segments = []
        for d in docs:
            local = self.store / factory / device / day_name(d["start"]) / d["filename"]
            uri = str(local) if local.is_file() else f"{self.config.node.kubo_gateway}/ipfs/{d['cid']}"
            key_id = d.get("key_id")
            key = str(key_paths[key_id]) if isinstance(key_id, str) else None
            iv = d.get("iv") if key is not None else None
            segments.append(
                PlaylistSegment(d["seq"], d["session"], uri, d["start"], float(d["duration"]), key, iv)
            )
        return compose_vod(segments)

    async def _export_keys(
        self, factory: str, device: str, docs: list[Any], directory: Path
    ) -> dict[str, Path]:
        """The range's content keys written as files ffmpeg reads (0600, removed with the directory)."""
        written: dict[str, Path] = {}
        for d in docs:
            key_id = d.get("key_id")
            if not isinstance(key_id, str) or key_id in written:
                continue
            key = await self.content_key(factory, device, key_id)
            path = directory / f"{key_id}.key"
            await asyncio.to_thread(create_private, path, key)
            written[key_id] = path
        return written

    @contextlib.asynccontextmanager
    async def _remux(
        self, factory: str, device: str, docs: list[Any]
    ) -> AsyncIterator[tuple[asyncio.StreamReader, Callable[[], Awaitable[tuple[int, str]]]]]:
        """ffmpeg remuxing (and decrypting) the range into MP4: its stdout, and a call that
        waits for its exit status and last stderr. Keys and the listing live in a private
        temporary directory; ffmpeg is killed if the caller stops reading early."""
        with tempfile.TemporaryDirectory(prefix="camswarm-export-") as tmp:  # 0700
            key_paths = await self._export_keys(factory, device, docs, Path(tmp))
            source = await asyncio.to_thread(self._export_source, factory, device, docs, key_paths)
            listing = Path(tmp) / "range.m3u8"
            await asyncio.to_thread(listing.write_text, source, encoding="utf-8")
            process = await asyncio.create_subprocess_exec(
                *export_argv(self.config.node.ffmpeg, listing),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert process.stdout is not None
            assert process.stderr is not None
            stderr = asyncio.create_task(process.stderr.read())  # drained alongside: never blocks ffmpeg

            async def finished() -> tuple[int, str]:
                errors = (await stderr).decode("utf-8", "replace")[-2000:]
                return await process.wait(), errors

            try:
                yield process.stdout, finished
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                stderr.cancel()

    @staticmethod
    def _clip_name(factory: str, device: str, docs: list[Any], suffix: str) -> str:
        return f"{factory}-{device}-{docs[0]['start'].astimezone(UTC):%Y%m%dT%H%M%SZ}{suffix}"

    async def export(self, request: web.Request) -> web.StreamResponse:
        """The range as an MP4 (stream copy, fragmented so it streams while ffmpeg produces it)."""
        _, factory, device = await self.require_camera(request)
        docs = await self._range_docs(request, factory, device)
        name = self._clip_name(factory, device, docs, ".mp4")
        response = web.StreamResponse(
            headers={
                "Content-Type": "video/mp4",
                "Content-Disposition": f'attachment; filename="{name}"',
                # No Content-Length while streaming: this is what the UI shows progress against.
                "X-Camswarm-Estimated-Bytes": str(sum(int(d.get("size", 0)) for d in docs)),
                "X-Camswarm-Segments": str(len(docs)),
                "Cache-Control": "no-store",
            }
        )
        async with self._remux(factory, device, docs) as (stdout, finished):
            await response.prepare(request)
            while chunk := await stdout.read(1 << 16):
                await response.write(chunk)
            status, errors = await finished()
            if status != 0:
                log.warning("export_failed", extra=kv(camera=f"{factory}/{device}", stderr=errors))
            await response.write_eof()
        log.info("export", extra=kv(camera=f"{factory}/{device}", segments=len(docs)))
        return response

    async def export_proof(self, request: web.Request) -> web.Response:
        """The sidecar proof of ``/export/...mp4`` for the same range (see node/anchors.py).

        The export is a deterministic stream copy, so the clip is remuxed here once more to
        hash exactly the bytes the export sends.
        """
        _, factory, device = await self.require_camera(request)
        docs = await self._range_docs(request, factory, device)
        digest, size = hashlib.sha256(), 0
        async with self._remux(factory, device, docs) as (stdout, finished):
            while chunk := await stdout.read(1 << 16):
                digest.update(chunk)
                size += len(chunk)
            if (await finished())[0] != 0:
                raise _error(502, "the clip could not be remuxed for its proof")
        first, last = docs[0]["start"], docs[-1]["start"] + timedelta(seconds=1)
        records = await self.catalog.anchors_between(factory, device, first, last)
        events: dict[str, Any] = {}
        if records:
            since, until = records[0]["period_start"], records[-1]["period_end"]
            found = await self.catalog.chain_anchors_between(factory, device, since, until)
            events = {event["_id"]: event for event in found}
        clip = {
            "sha256": digest.hexdigest(),
            "size": size,
            "range": [request.query["start"], request.query["end"]],
        }
        proof = build_proof(
            factory,
            device,
            clip,
            docs,
            {r["_id"]: r for r in records},
            events,
            contract=_the_only(str(e["contract"]) for e in events.values() if e.get("contract")),
            chain_id=_the_only(int(e["chain_id"]) for e in events.values() if e.get("chain_id") is not None),
        )
        name = self._clip_name(factory, device, docs, ".proof.json")
        headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
        return web.json_response(proof, headers=headers, dumps=lambda o: json.dumps(o, indent=1))

    async def timeline(self, request: web.Request) -> web.Response:
        _, factory, device = await self.require_camera(request)
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            day = parse_day(request.query.get("day"), now.date())
        except BadRequest as exc:
            raise _error(400, str(exc)) from None
        first, last = day_bounds(day)
        docs = await self.catalog.segments_between(factory, device, first, last)
        records = await self.catalog.anchors_between(factory, device, first, last)
        events = await self.catalog.chain_anchors_between(factory, device, first, last)
        chain = {event["_id"]: event for event in events}
        marks = await asyncio.to_thread(  # the store's day index is read in the worker thread
            lambda: anchor_marks(records, chain, self._held(factory, device, day.isoformat()))
        )
        body = {"factory": factory, "device": device, **timeline(docs, day, now), "periods": marks}
        return web.json_response(body)

    def _held(self, factory: str, device: str, day: str) -> Callable[[datetime, datetime], list[str] | None]:
        """What this gateway's store holds of ``day``: for ``[start, end)``, the CIDs in seq order.

        The day's index is refreshed and sorted once; each period is then a slice of it
        (``HHMMSS-<seq>.ts`` names sort by start second, then seq).
        """
        index = self._day_index(factory, device, day)
        index.refresh()
        names = sorted(index.cids)
        cids = [index.cids[name] for name in names]

        def held(start: datetime, end: datetime) -> list[str] | None:
            low = bisect.bisect_left(names, f"{start:%H%M%S}")
            high = bisect.bisect_left(names, f"{end:%H%M%S}" if end.date() == start.date() else "240000")
            return cids[low:high] or None

        return held

    async def index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(
            WEB / "index.html",
            headers={
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-cache",
            },
        )

    async def static(self, request: web.Request) -> web.FileResponse:
        entry = STATIC.get(request.match_info["name"])
        if entry is None:
            raise _error(404, "no such file")
        path = WEB / entry[0]
        if not path.is_file():  # hls.js comes from npm at `make deps`
            raise _error(404, f"{entry[0]} is not installed; run make deps")
        return web.FileResponse(path, headers={"Content-Type": entry[1], "Cache-Control": "no-cache"})

    async def healthz(self, _: web.Request) -> web.Response:
        try:
            await self.catalog.list_cameras()
            catalog_ok = True
        except DaemonError:
            catalog_ok = False
        status = "ok" if catalog_ok and self.store.is_dir() else "degraded"
        return web.json_response({"status": status, "catalog_ok": catalog_ok, "store": str(self.store)})

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # --- the application -----------------------------------------------------------------------

    @web.middleware
    async def errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        began = time.monotonic()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.requests.labels(route, str(exc.status)).inc()
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            # aiohttp's own errors (unknown route, wrong method, ...) as JSON, keeping their
            # status and headers (Allow on a 405), not folded into _error's known statuses.
            headers = {
                k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
            }
            return web.json_response({"error": exc.reason or "error"}, status=exc.status, headers=headers)
        except DaemonError as exc:
            self.requests.labels(route, "503").inc()
            allowed, suppressed = self.limiter.allow("daemon")
            if allowed:
                log.warning("catalog_unavailable", extra=kv(error=str(exc), suppressed=suppressed))
            raise _error(503, "the catalog is unavailable; try again shortly") from None
        except Exception:
            self.requests.labels(route, "500").inc()
            log.exception("request_failed", extra=kv(route=route))
            raise web.HTTPInternalServerError(
                text=json.dumps({"error": "internal error"}), content_type="application/json"
            ) from None
        finally:
            self.seconds.labels(route).observe(time.monotonic() - began)
        self.requests.labels(route, str(response.status)).inc()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.errors])
        app[GATEWAY_KEY] = self
        r = app.router
        camera = "{factory:[^/]{1,64}}/{device:[^/.]{1,64}}"
        r.add_post("/api/login", self.login)
        r.add_post("/api/logout", self.logout)
        r.add_get("/api/me", self.me)
        r.add_get("/api/cameras", self.cameras)
        r.add_get(f"/api/timeline/{camera}", self.timeline)
        r.add_get(f"/live/{camera}.m3u8", self.live)
        r.add_get(f"/live/{camera}/day.m3u8", self.day)
        r.add_get(f"/replay/{camera}.m3u8", self.replay)
        r.add_get(f"/export/{camera}.mp4", self.export)
        r.add_get(f"/export/{camera}.proof.json", self.export_proof)
        r.add_get(f"/keys/{camera}/{{key_id:[^/]{{1,64}}}}", self.key)
        r.add_get("/", self.index)
        r.add_get("/static/{name}", self.static)
        r.add_get("/healthz", self.healthz)
        r.add_get("/metrics", self.metrics)
        return app

    async def close(self) -> None:
        await self.catalog.close()


def export_argv(ffmpeg: str, listing: Path) -> list[str]:
    """ffmpeg remuxing a range playlist into fragmented MP4 on stdout (stream copy).

    Bit-exact, so the same segments always give the same bytes: an export's proof hashes them.
    """
    return [
        ffmpeg, "-nostdin", "-v", "error",
        "-protocol_whitelist", "file,http,tcp,crypto", "-allowed_extensions", "ALL",
        "-i", str(listing), "-map", "0", "-c", "copy", "-map_metadata", "-1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", "pipe:1",
    ]  # fmt: skip


def _master_key(path: str) -> bytes | None:
    """The master key when configured; an unusable file is a config error naming the field."""
    if not path:
        return None
    try:
        return key_files.load_master_key(Path(path).expanduser())
    except key_files.KeyFileError as exc:
        raise ConfigError("node.master_key_file", str(exc)) from None


def _instant(value: Any) -> str | None:
    return format_start(value) if isinstance(value, datetime) else None


def _playlist(text: str, *, max_age: int) -> web.Response:
    return web.Response(
        text=text,
        content_type=HLS,
        headers={"Cache-Control": f"private, max-age={max_age}"},
    )


async def serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    gateway = Gateway(config)
    if not config.node.users_file.exists():
        log.warning("no_users", extra=kv(users_file=str(config.node.users_file), hint="camswarm users add"))
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    host, _, port = config.node.listen.rpartition(":")
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        log.info("gateway_started", extra=kv(listen=f"http://{config.node.listen}", store=str(gateway.store)))
        await stop.wait()
    finally:
        await runner.cleanup()
        await gateway.close()
        log.info("gateway_stopped")
