"""Per-caller token buckets for Refresh: one client must not turn the daemon into a STUN/store
traffic generator (every Refresh costs STUN packets and store API quota).

Buckets are keyed by caller identity (``auth.Caller.budget_key``: a uid, or one root process),
never by connection: a caller reconnecting for every call spends the same budget. An idle bucket
can be dropped once it would be full again: a full bucket and no bucket are the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``burst`` calls at once, then ``rate`` per second, per key."""

    def __init__(
        self, rate: float, burst: int, *, clock: Clock = time.monotonic, max_keys: int = 4096
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limiter needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may call again (0 when it may now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = bucket.tokens + (self.clock() - bucket.stamp) * self.rate
        return max(0.0, (1.0 - tokens) / self.rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= refill]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:  # all busy: drop the oldest
            del self._buckets[next(iter(self._buckets))]
