"""The engine reads what a store can do from its declared capabilities, never by probing."""

from __future__ import annotations

from collections.abc import AsyncIterator

from stunmeshd.engine import _candidates
from stunmeshd.stores.base import PLAIN, StoreCapabilities

KEY = "12850bc1c76f60f1b38169066b58097a94c7c366"


class Listing:
    """Has a get_all method; only its declaration decides whether the engine uses it."""

    def __init__(self, capabilities: StoreCapabilities) -> None:
        self.name = "l"
        self.capabilities = capabilities

    async def get(self, key: str) -> str | None:
        return "newest"

    async def get_all(self, key: str) -> list[tuple[int, str]]:
        return [(3, "newest"), (2, "older"), (1, "oldest")]

    async def set(self, key: str, value: str) -> None:
        pass

    def watch(self, key: str) -> AsyncIterator[None]:
        raise AssertionError("never called here")

    async def close(self) -> None:
        pass


async def test_candidates_come_from_get_all_only_when_declared() -> None:
    declared = Listing(StoreCapabilities(get_all=True))
    assert await _candidates(declared, KEY) == ["newest", "older", "oldest"]
    undeclared = Listing(PLAIN)
    assert await _candidates(undeclared, KEY) == ["newest"]
