"""The engine: one worker per managed WireGuard interface — discover, publish, fetch, apply.

When cycles run, what is retried how soon, when a peer counts as failed: the scheduling rules
are written down once, in docs/architecture.md ("Scheduling rules"), and implemented once, in
``schedule.py`` (deadlines and backoff) and ``decisions.py`` (pure choices).

The engine knows nothing of D-Bus: it writes ``model`` state and emits its events.
"""

from .worker import (
    STORE_GRACE,
    Backoff,
    CycleResult,
    DeviceWorker,
    Engine,
    _candidates,
    choose_endpoint,
    handshake_recent,
    seal_within,
    store_timeout,
)

__all__ = [
    "STORE_GRACE",
    "Backoff",
    "CycleResult",
    "DeviceWorker",
    "Engine",
    "_candidates",
    "choose_endpoint",
    "handshake_recent",
    "seal_within",
    "store_timeout",
]
