"""The engine's clock: monotonic time for deadlines, wall time for records and handshakes.

Injected (``Engine(clock=...)``) so the scheduling rules run under a :class:`FakeClock` in
unit tests: no root, no sleeping, no waiting for real seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: every deadline is on it."""
        ...

    def wall(self) -> float:
        """Unix time: record stamps, WireGuard's handshake times, bus timestamps."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock."""
        ...


class SystemClock:
    """The real clocks (``time.monotonic`` is what the event loop's timers run on)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class FakeClock:
    """A clock that moves only when told (``advance``) or slept on: for tests."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self._mono, self._wall = monotonic, wall

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, delay: float) -> None:
        self._mono += delay
        self._wall += delay

    async def sleep(self, delay: float) -> None:
        self.advance(max(0.0, delay))
        await asyncio.sleep(0)
