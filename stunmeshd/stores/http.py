"""Helpers shared by the HTTP stores (OpenDHT, Cloudflare): bounded bodies, readable errors."""

from __future__ import annotations

import aiohttp


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


def transport_reason(exc: BaseException) -> str:
    """A transport failure in words (aiohttp's messages name host and port, never headers)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
