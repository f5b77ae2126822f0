"""The Cloudflare store's aiohttp session, bounded bodies, readable errors (OpenDHT: http11.py)."""

from __future__ import annotations

import asyncio

import aiohttp


class PooledSession:
    """One aiohttp session and request slots per store, made in the loop that first uses them.

    The store sets ``timeout`` (s, per request), ``_session`` and ``_slots`` (None until
    used) and may change ``max_concurrency`` before first use; it closes ``_session``.
    """

    max_concurrency = 32  # requests in flight per store
    timeout: float
    _session: aiohttp.ClientSession | None
    _slots: asyncio.Semaphore | None

    def _session_for_loop(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._session.closed or self._slots is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "stunmeshd"},
            )
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._session, self._slots


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, but no more than ``limit`` + 1 bytes (more means "too big").

    Reads chunk by chunk: ``content.read(n)`` returns only what is buffered, and dhtnode sends
    each value as its own chunk.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]
