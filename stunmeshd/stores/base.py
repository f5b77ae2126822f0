"""The Store Protocol: where sealed endpoint records live (DNS, DHT, a program, ...)."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """A key-value store for records. Keys are 40 lower-hex chars, values lower hex."""

    name: str  # the plugin instance name from the config (the Peer.Store property)

    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None when there is none. Raises StoreError."""
        ...

    async def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``. Raises StoreError."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...
