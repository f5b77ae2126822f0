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

from typing import Any

from stunmeshd.stores.base import Store


class DedupStore:
    """Wraps any Store; ``set(..., fingerprint=...)`` is skipped when nothing changed."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
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

    def __getattr__(self, attr: str) -> Any:
        # Optional capabilities of the wrapped store (get_all, republish_interval, ...)
        # stay visible to callers that probe for them with getattr().
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

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
