"""The lab's building blocks are async context managers with one shape: start, close."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Resource:
    """``async with`` runs ``start()``, and ``close()`` on the way out — also when ``start()``
    fails half-way, so nothing (a namespace, a process) is left behind."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
