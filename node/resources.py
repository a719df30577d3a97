"""A base for clients that own connections and must be closed."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """``async with Client(...) as c:`` closes the client on the way out."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
