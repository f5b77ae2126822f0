"""The Store Protocol: where sealed endpoint records live (DNS, DHT, a program, ...)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from stunmeshd.errors import StoreError

_KEY_RE = re.compile(r"[0-9a-f]{40}")
_VALUE_RE = re.compile(r"(?:[0-9a-f]{2})+")


def check_key(key: str) -> str:
    """The key, if it is 40 lower-hex chars (the Store contract); StoreError otherwise.

    Every store checks before using it: a key becomes a URL path, a DNS name or a plugin's
    input, and anything but hex could inject into those.
    """
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise StoreError("invalid key: expected 40 hex characters (lower-case)")
    return key


def transport_reason(exc: BaseException) -> str:
    """A store's transport failure in words, for logs and StoreErrors.

    Both HTTP clients' messages name host and port, never a header or a body; a time limit
    reached says so (its exception has no message).
    """
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def check_value(value: str) -> str:
    """The value, if it is non-empty lower hex of whole bytes (a sealed record)."""
    if not isinstance(value, str) or not _VALUE_RE.fullmatch(value):
        raise StoreError("invalid value: expected lower-case hex")
    return value


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What a store can do beyond get/set, declared once instead of probed with getattr.

    A store class declares ``capabilities = StoreCapabilities(...)``; the registry gives a
    class that declares nothing the defaults (a plain key-value store) and checks that the
    methods a capability promises exist. Dedup forwards them explicitly.
    """

    get_all: bool = False
    """``get_all(key) -> list[(ts, value)]``, newest first: the engine tries every candidate."""
    supports_watch: bool = False
    """``watch(key)`` is an async iterator that yields when the record changes (see OpenDHT)."""
    republish_interval: float | None = None
    """Seconds within which a record must be written again, or it expires."""
    dedup_safe: bool = True
    """False when values expire: ``dedup: true`` must not skip a refresh."""
    max_value_length: int | None = None
    """Longest value its readers take (Cloudflare TXT: 255); the engine keeps records within."""


PLAIN = StoreCapabilities()
"""A store that can only get and set: what third-party stores get unless they declare more."""


class Store(Protocol):
    """A key-value store for records. Keys are 40 lower-hex chars, values lower hex."""

    name: str  # the plugin instance name from the config (the Peer.Store property)
    capabilities: StoreCapabilities

    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None when there is none. Raises StoreError."""
        ...

    async def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``. Raises StoreError."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class MultiValueStore(Store, Protocol):
    """A store with ``capabilities.get_all``."""

    async def get_all(self, key: str) -> list[tuple[int, str]]:
        """Every acceptable (ts, value) under ``key``, newest first."""
        ...


class WatchableStore(Store, Protocol):
    """A store with ``capabilities.supports_watch``."""

    def watch(self, key: str) -> AsyncIterator[None]:
        """Yield once the watch is live, then whenever the record under ``key`` changes."""
        ...
