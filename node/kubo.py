"""Thin async client for the Kubo (go-ipfs) RPC API, ``/api/v0``.

Only what camswarm uses. We do not use ipfshttpclient: see docs/decisions.md.
Every call is an HTTP POST (Kubo refuses GET on the RPC API). CIDs given by the
caller are validated locally first, so a malformed one raises ``BadCID``
without a round trip.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from node.errors import BadCID, DaemonHTTPError
from node.http_client import HTTPDaemonClient
from node.ipfs_codec import PubsubMessage, decode_pubsub_message, encode_topic, multibase_decode, parse_cid

_BAD_CID_HINTS = ("invalid cid", "invalid path", "selected encoding not supported", "illegal base")


@dataclass(frozen=True)
class AddResult:
    cid: str
    size: int  # Kubo's cumulative size of the DAG, in bytes
    name: str


@dataclass(frozen=True)
class FileStat:
    cid: str
    size: int
    cumulative_size: int
    type: str  # "file" or "directory"


@dataclass(frozen=True)
class SwarmPeer:
    peer: str
    addr: str


@dataclass(frozen=True)
class NameEntry:
    name: str
    value: str


def _b(flag: bool) -> str:
    return "true" if flag else "false"


def _ipfs_path(cid_or_path: str) -> str:
    """Accept a bare CID or an /ipfs/... path; validate the CID part."""
    if cid_or_path.startswith("/ipfs/"):
        parse_cid(cid_or_path.split("/")[2])
        return cid_or_path
    return parse_cid(cid_or_path)


class KuboClient(HTTPDaemonClient):
    service = "kubo"

    def __init__(self, api_url: str, *, timeout: float = 30.0) -> None:
        super().__init__(api_url.rstrip("/") + "/api/v0", timeout=timeout)

    @staticmethod
    @contextmanager
    def _bad_cid_as_badcid() -> Iterator[None]:
        """Kubo reports a malformed CID as a generic 500; give it its own type."""
        try:
            yield
        except DaemonHTTPError as exc:
            if any(hint in exc.message.lower() for hint in _BAD_CID_HINTS):
                raise BadCID(exc.message) from exc
            raise

    async def _call(self, command: str, params: list[tuple[str, str]] | None = None, **kwargs: Any) -> Any:
        with self._bad_cid_as_badcid():
            return await self.request_json("POST", f"/{command}", params=params or [], **kwargs)

    # --- node -----------------------------------------------------------------
    async def id(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("id")
        return result

    async def version(self) -> str:
        result = await self._call("version")
        return str(result["Version"])

    # --- content ----------------------------------------------------------------
    async def add(
        self,
        content: bytes | Path,
        *,
        filename: str = "data",
        cid_version: int = 1,
        pin: bool = True,
        only_hash: bool = False,
        timeout: float | None = None,
    ) -> AddResult:
        """Add one file; returns its CID and Kubo's reported size."""
        params = [
            ("cid-version", str(cid_version)),
            ("pin", _b(pin)),
            ("only-hash", _b(only_hash)),
            ("progress", "false"),
        ]
        form = aiohttp.FormData()
        if isinstance(content, Path):
            with content.open("rb") as handle:
                form.add_field("file", handle, filename=filename, content_type="application/octet-stream")
                records = await self._add_request(params, form, timeout)
        else:
            form.add_field("file", content, filename=filename, content_type="application/octet-stream")
            records = await self._add_request(params, form, timeout)
        last = records[-1]
        return AddResult(cid=str(last["Hash"]), size=int(last["Size"]), name=str(last.get("Name", filename)))

    async def _add_request(
        self, params: list[tuple[str, str]], form: aiohttp.FormData, timeout: float | None
    ) -> list[Any]:
        records = await self.request_ndjson("POST", "/add", params=params, data=form, timeout=timeout)
        if not records:
            raise DaemonHTTPError(self.service, self.base_url + "/add", 200, "add returned no result")
        return records

    async def cat(
        self, cid: str, *, offset: int = 0, length: int | None = None, timeout: float | None = None
    ) -> bytes:
        params = [("arg", _ipfs_path(cid)), ("offset", str(offset))]
        if length is not None:
            params.append(("length", str(length)))
        with self._bad_cid_as_badcid():
            return await self.request_bytes("POST", "/cat", params=params, timeout=timeout)

    async def cat_stream(self, cid: str, *, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Yield a file's bytes as they arrive (for large segments and exports)."""
        async with self.request("POST", "/cat", params=[("arg", _ipfs_path(cid))], stream=True) as response:
            async for chunk in response.content.iter_chunked(chunk_size):
                yield chunk

    # --- pins -------------------------------------------------------------------
    async def pin_add(self, cid: str, *, recursive: bool = True, timeout: float | None = None) -> list[str]:
        result = await self._call(
            "pin/add", [("arg", _ipfs_path(cid)), ("recursive", _b(recursive))], timeout=timeout
        )
        return [str(p) for p in (result or {}).get("Pins") or []]

    async def pin_rm(self, cid: str) -> list[str]:
        result = await self._call("pin/rm", [("arg", _ipfs_path(cid))])
        return [str(p) for p in (result or {}).get("Pins") or []]

    async def pin_ls(self, cid: str | None = None, *, type: str = "recursive") -> dict[str, str]:
        """Pinned CIDs mapped to their pin type; an unpinned ``cid`` gives ``{}``."""
        params = [("type", type)]
        if cid is not None:
            params.append(("arg", _ipfs_path(cid)))
        try:
            result = await self._call("pin/ls", params)
        except DaemonHTTPError as exc:
            if cid is not None and "not pinned" in exc.message:
                return {}
            raise
        keys = (result or {}).get("Keys") or {}
        return {str(k): str(v.get("Type", "")) for k, v in keys.items()}

    # --- pubsub -----------------------------------------------------------------
    async def pubsub_pub(self, topic: str, data: bytes) -> None:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="data", content_type="application/octet-stream")
        await self.request_bytes("POST", "/pubsub/pub", params=[("arg", encode_topic(topic))], data=form)

    async def pubsub_sub(self, topic: str) -> AsyncIterator[PubsubMessage]:
        """Yield messages on ``topic`` until the caller stops iterating or the daemon goes away.

        Records that fail to decode are skipped: what arrives here is untrusted.
        """
        async with self.request(
            "POST", "/pubsub/sub", params=[("arg", encode_topic(topic))], stream=True
        ) as resp:
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        yield decode_pubsub_message(json.loads(line))
                    except ValueError:
                        continue

    async def pubsub_peers(self, topic: str) -> list[str]:
        result = await self._call("pubsub/peers", [("arg", encode_topic(topic))])
        return [str(p) for p in (result or {}).get("Strings") or []]

    async def pubsub_ls(self) -> list[str]:
        result = await self._call("pubsub/ls")
        return [multibase_decode(str(t)).decode("utf-8") for t in (result or {}).get("Strings") or []]

    # --- MFS ----------------------------------------------------------------------
    async def files_mkdir(self, path: str, *, parents: bool = True, cid_version: int = 1) -> None:
        await self._call(
            "files/mkdir", [("arg", path), ("parents", _b(parents)), ("cid-version", str(cid_version))]
        )

    async def files_cp(self, source: str, dest: str, *, parents: bool = True, force: bool = False) -> None:
        """Link ``source`` (a CID or /ipfs/ path) at ``dest``; ``force`` replaces an existing entry."""
        src = "/ipfs/" + parse_cid(source) if not source.startswith("/") else source
        await self._call(
            "files/cp", [("arg", src), ("arg", dest), ("parents", _b(parents)), ("force", _b(force))]
        )

    async def files_stat(self, path: str) -> FileStat:
        result = await self._call("files/stat", [("arg", path)])
        return FileStat(
            cid=str(result["Hash"]),
            size=int(result.get("Size", 0)),
            cumulative_size=int(result.get("CumulativeSize", 0)),
            type=str(result.get("Type", "")),
        )

    async def files_rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None:
        # files/rm streams: a failure arrives as HTTP 200 with the error text as the body.
        params = [("arg", path), ("recursive", _b(recursive)), ("force", _b(force))]
        body = await self.request_bytes("POST", "/files/rm", params=params)
        text = body.decode("utf-8", "replace").strip().strip('"')
        if text:
            raise DaemonHTTPError(self.service, self.base_url + "/files/rm", 200, text)

    # --- swarm ----------------------------------------------------------------------
    async def swarm_connect(self, multiaddr: str) -> None:
        await self._call("swarm/connect", [("arg", multiaddr)])

    async def peering_peers(self) -> list[dict[str, Any]]:
        """The node's ``Peering.Peers`` configuration ([] when none is set)."""
        result = await self._call("config", [("arg", "Peering.Peers")])
        value = (result or {}).get("Value") if isinstance(result, dict) else None
        return [p for p in value if isinstance(p, dict)] if isinstance(value, list) else []

    async def swarm_peers(self) -> list[SwarmPeer]:
        result = await self._call("swarm/peers")
        return [
            SwarmPeer(peer=str(p["Peer"]), addr=str(p.get("Addr", "")))
            for p in (result or {}).get("Peers") or []
        ]

    # --- IPNS -----------------------------------------------------------------------
    async def name_publish(
        self, path: str, *, key: str = "self", lifetime: str = "24h", allow_offline: bool = True
    ) -> NameEntry:
        result = await self._call(
            "name/publish",
            [
                ("arg", _ipfs_path(path)),
                ("key", key),
                ("lifetime", lifetime),
                ("allow-offline", _b(allow_offline)),
            ],
        )
        return NameEntry(name=str(result["Name"]), value=str(result["Value"]))

    async def name_resolve(self, name: str, *, nocache: bool = True) -> str:
        result = await self._call("name/resolve", [("arg", name), ("nocache", _b(nocache))])
        return str(result["Path"])
