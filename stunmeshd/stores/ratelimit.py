"""A request budget shared by every store instance that spends the same API quota.

Cloudflare allows 1,200 requests per 5 minutes *per token*, whatever number of plugin
instances (or daemons' interfaces) use that token, so the budget must be one object per
token, not per store. Budgets are looked up by a salted hash of the secret, never the secret.

The budget is a sliding window: at most ``limit`` requests *start* in any ``window`` seconds.
Callers reserve a start time (first come, first served) and sleep until it, so a burst of
1,000 peers is spread over the window instead of tripping the server's limit. A server's
``429 Retry-After`` pauses the whole budget. The state is guarded by a thread lock, so one
budget also works for stores running on several event loops (the lab runs stores on threads).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from stunmeshd.errors import StoreError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class BudgetExhausted(StoreError):
    """No request may start within the caller's patience; ``wait`` says how long it would take."""

    def __init__(self, message: str, *, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class RequestBudget:
    """At most ``limit`` request starts in any ``window`` seconds, plus server-imposed pauses."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock  # replaceable in tests (virtual time)
        self.sleep = sleep
        self._lock = threading.Lock()
        # booked start times, non-decreasing, from one window ago into the future
        self._starts: deque[float] = deque()
        self._paused_until = float("-inf")

    def __repr__(self) -> str:
        return f"<RequestBudget {self.limit}/{self.window:g}s used={self.used()}>"

    def reserve(self, max_wait: float | None = None, *, keep: int = 0) -> float:
        """Book the earliest start time the window allows and return it (clock time).

        ``keep`` slots of every window are left to other callers (background work keeps
        room for urgent requests). Raises BudgetExhausted, booking nothing, when that time is
        more than ``max_wait`` seconds away.
        """
        with self._lock:
            now = self.clock()
            start, paused = self._earliest(now, keep)
            wait = start - now
            if max_wait is not None and wait > max_wait:
                if paused and start == self._paused_until:
                    reason = f"paused by the server for another {wait:.0f} s"
                else:
                    reason = (
                        f"request budget exhausted ({self.limit} per {self.window:g} s); "
                        f"next request possible in {wait:.0f} s"
                    )
                raise BudgetExhausted(reason, wait=wait)
            self._starts.append(start)
            return start

    def _earliest(self, now: float, keep: int) -> tuple[float, bool]:
        """The earliest allowed start from ``now`` (lock held), and whether a pause set it."""
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()  # out of every window that can still matter
        start = max(now, self._paused_until)
        paused = start > now
        if self._starts:
            start = max(start, self._starts[-1])  # first come, first served
        cap = max(1, self.limit - keep)
        if len(self._starts) >= cap:
            start = max(start, self._starts[-cap] + self.window)
        return start, paused

    def available_in(self, keep: int = 0) -> float:
        """Seconds until a request leaving ``keep`` slots to others could start (books none)."""
        with self._lock:
            now = self.clock()
            return self._earliest(now, keep)[0] - now

    async def acquire(self, max_wait: float | None = None, *, keep: int = 0) -> float:
        """Wait for a reserved start (and any pause ordered meanwhile); return the start time.

        If the wait is cancelled (the caller's own timeout) or refused, the slot is given
        back: a request that was never sent must not use up the quota. With ``keep``, no slot
        is booked ahead: the caller waits until one is free now, so it never makes urgent
        callers queue behind it.
        """
        if keep:
            waited = 0.0
            while (wait := self.available_in(keep)) > 0:
                if max_wait is not None and waited + wait > max_wait:
                    raise BudgetExhausted(
                        f"request budget kept for others; next slot in {wait:.0f} s", wait=wait
                    )
                await self.sleep(wait)
                waited += wait
            try:
                return self.reserve(0.0, keep=keep)
            except BudgetExhausted:
                return await self.acquire(max_wait, keep=keep)  # taken meanwhile: wait again
        start = self.reserve(max_wait)
        try:
            delay = start - self.clock()
            if delay > 0:
                await self.sleep(delay)
            # A 429 seen by someone else while we slept pauses everybody, us included.
            while (pause := self._paused_until - self.clock()) > 0:
                if max_wait is not None and pause > max_wait:
                    raise BudgetExhausted(
                        f"paused by the server for another {pause:.0f} s", wait=pause
                    )
                await self.sleep(pause)
        except BaseException:
            self._release(start)
            raise
        return start

    def _release(self, start: float) -> None:
        with self._lock:
            try:
                self._starts.remove(start)  # equal times are interchangeable
            except ValueError:
                pass

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (the server said 429 with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds left of a server-imposed pause (0 when not paused)."""
        return max(0.0, self._paused_until - self.clock())

    def used(self) -> int:
        """Requests started (or booked) within the current window."""
        with self._lock:
            horizon = self.clock() - self.window
            return sum(1 for t in self._starts if t > horizon)


_budgets: dict[str, RequestBudget] = {}
_budgets_lock = threading.Lock()


def budget_id(scope: str, secret: str) -> str:
    """A stable identifier for (scope, secret) that does not reveal the secret."""
    digest = hashlib.sha256(b"stunmeshd-budget\0" + scope.encode() + b"\0" + secret.encode())
    return digest.hexdigest()[:16]


def shared_budget(scope: str, secret: str, *, limit: int, window: float) -> RequestBudget:
    """The one budget for ``secret`` at ``scope`` (e.g. an API base URL), created on first use."""
    key = budget_id(scope, secret)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RequestBudget(limit, window)
        return budget
