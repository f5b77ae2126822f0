"""``dedup: true``: skip a publish whose endpoint has not changed, as stunmesh-go does.

stunmesh-go (internal/ctrl/publish.go) keeps, per publish key, the *plaintext* JSON of the
last successful Set and skips a new Set when the new plaintext is identical and the peer's
plugin has dedup on. It compares plaintext because sealed values differ on every write (fresh
nonce). stunmeshd's plaintext also carries ``ts``, which changes every time, so the comparison
uses :attr:`EndpointRecord.fingerprint` — the ts-less JSON, i.e. exactly stunmesh-go's
plaintext. The memory is per process: a restart publishes once more. Worth it for stores with
quotas (Cloudflare); wrong for stores whose values expire (OpenDHT), which the registry
therefore never wraps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from stunmeshd.errors import StoreError
from stunmeshd.stores.base import MultiValueStore, Store, WatchableStore


class DedupStore:
    """Wraps any Store; ``set(..., fingerprint=...)`` is skipped when nothing changed."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities  # dedup adds no capability and hides none
        # the store's own time limit, which the engine reads (no __getattr__ forwarding)
        self.timeout: float | None = getattr(inner, "timeout", None)
        self._last: dict[str, str] = {}  # publish key -> fingerprint of the last good set

    def is_current(self, key: str, fingerprint: str) -> bool:
        """True if the last successful set under ``key`` had this fingerprint."""
        return self._last.get(key) == fingerprint

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)

    async def set(self, key: str, value: str, *, fingerprint: str | None = None) -> None:
        """Store unless ``fingerprint`` equals the last successful one for ``key``.

        Without a fingerprint the value is always written (and the memory for ``key`` is
        dropped, since what is stored is no longer known). A failed write is not remembered.
        """
        if fingerprint is not None and self.is_current(key, fingerprint):
            return
        self._last.pop(key, None)
        await self.inner.set(key, value)
        if fingerprint is not None:
            self._last[key] = fingerprint

    def forget(self, key: str | None = None) -> None:
        """Make the next set under ``key`` (or every key) write, e.g. after the store lost it."""
        if key is None:
            self._last.clear()
        else:
            self._last.pop(key, None)

    async def close(self) -> None:
        await self.inner.close()

    async def get_all(self, key: str) -> list[tuple[int, str]]:
        """The inner store's ``get_all`` (only for ``capabilities.get_all``)."""
        if not self.capabilities.get_all:
            raise StoreError(f"{self.name}: the store has no get_all")
        return await cast(MultiValueStore, self.inner).get_all(key)

    def watch(self, key: str) -> AsyncIterator[None]:
        """The inner store's ``watch`` (only for ``capabilities.supports_watch``)."""
        if not self.capabilities.supports_watch:
            raise StoreError(f"{self.name}: the store cannot watch")
        return cast(WatchableStore, self.inner).watch(key)

    def __repr__(self) -> str:
        return f"<DedupStore {self.inner!r}>"


async def publish(
    store: Store, key: str, value: str, fingerprint: str, *, force: bool = False
) -> bool:
    """Write ``value`` under ``key`` through any store; False when dedup skipped it.

    The one call for publishing: plain stores always write; a DedupStore writes only when
    ``fingerprint`` (``record.fingerprint``) changed since its last good write, or ``force``.
    """
    if isinstance(store, DedupStore):
        if not force and store.is_current(key, fingerprint):
            return False
        store.forget(key)
        await store.set(key, value, fingerprint=fingerprint)
        return True
    await store.set(key, value)
    return True
