"""Shared plumbing for the thin aiohttp clients of Kubo and ipfs-cluster.

One place maps transport failures to camswarm's exception types, so every
client reports an unreachable daemon, a timeout or an HTTP error the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from node.errors import DaemonHTTPError, DaemonTimeout, DaemonUnreachable
from node.resources import AsyncResource

Params = Sequence[tuple[str, str]] | Mapping[str, str]


class HTTPDaemonClient(AsyncResource):
    """Owns an aiohttp session for one daemon's HTTP API."""

    service = "daemon"

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No total timeout on the session: streams (pubsub) live for hours.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    @staticmethod
    def error_message(status: int, body: bytes) -> str:
        """The daemon's own error text, from its JSON error body if it has one."""
        text = body.decode("utf-8", "replace").strip()
        try:
            obj = json.loads(text)
        except ValueError:
            return text or f"HTTP {status}"
        if isinstance(obj, dict):
            for key in ("Message", "message", "error"):
                if isinstance(obj.get(key), str):
                    return str(obj[key])
        return text

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: Any = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield the response once its status is known to be 2xx.

        ``timeout`` bounds the whole exchange unless ``stream`` is set, in
        which case it bounds only connecting and the response headers.
        """
        url = f"{self.base_url}{path}"
        limit = self.timeout if timeout is None else timeout
        client_timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=limit, sock_read=None)
            if stream
            else aiohttp.ClientTimeout(total=limit)
        )
        try:
            async with self._http().request(
                method, url, params=params, data=data, timeout=client_timeout
            ) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise DaemonHTTPError(
                        self.service, url, response.status, self.error_message(response.status, body)
                    )
                yield response
        except TimeoutError as exc:
            raise DaemonTimeout(self.service, url, f"no answer within {limit:g}s") from exc
        except aiohttp.ClientPayloadError as exc:
            # The daemon went away in the middle of a body (a stream or a large cat).
            raise DaemonUnreachable(self.service, url, f"response cut off: {exc}") from exc
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise DaemonTimeout(self.service, url, str(exc) or "timed out") from exc
            raise DaemonUnreachable(self.service, url, str(exc) or type(exc).__name__) from exc

    async def request_bytes(self, method: str, path: str, **kwargs: Any) -> bytes:
        async with self.request(method, path, **kwargs) as response:
            return await response.read()

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self.request_bytes(method, path, **kwargs)
        if not body.strip():
            return None
        return json.loads(body)

    async def request_ndjson(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """A response that is either one JSON value or newline-delimited JSON, as a list."""
        body = await self.request_bytes(method, path, **kwargs)
        text = body.decode("utf-8").strip()
        if not text:
            return []
        try:
            whole = json.loads(text)
        except ValueError:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return whole if isinstance(whole, list) else [whole]
