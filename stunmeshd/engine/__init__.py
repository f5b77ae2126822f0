"""The engine: one worker per managed WireGuard interface — discover, publish, fetch, apply.

When cycles run, what is retried how soon, when a peer counts as failed: the scheduling rules
are written down once, in docs/architecture.md ("Scheduling rules"), and implemented once, in
``schedule.py`` (deadlines and backoff) and ``decisions.py`` (pure choices).

The engine knows nothing of D-Bus: it writes ``model`` state and emits its events.
"""

from .clock import Clock, FakeClock, SystemClock
from .decisions import choose_endpoint, handshake_recent
from .fetcher import _candidates
from .manager import STORE_GRACE, Engine, store_timeout
from .publisher import seal_within
from .runtime import CycleResult, PeerRuntime
from .schedule import Backoff, Schedule
from .worker import DeviceWorker

__all__ = [
    "STORE_GRACE",
    "Backoff",
    "Clock",
    "CycleResult",
    "DeviceWorker",
    "Engine",
    "FakeClock",
    "PeerRuntime",
    "Schedule",
    "SystemClock",
    "_candidates",
    "choose_endpoint",
    "handshake_recent",
    "seal_within",
    "store_timeout",
]
