"""What the engine keeps per peer besides its public state and its deadlines, and a cycle's
outcome as callers (D-Bus Refresh) see it."""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field

from stunmeshd import crypto
from stunmeshd.config import PeerConfig
from stunmeshd.errors import StunmeshError
from stunmeshd.health import TrafficWatch
from stunmeshd.logs import Throttle
from stunmeshd.model import PeerStatus
from stunmeshd.stores.base import Store

# one logger for the whole engine package: its log lines keep the name they always had
log = logging.getLogger("stunmeshd.engine")
noise = Throttle(60.0)  # faults that repeat every cycle: said once a minute per kind


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass(frozen=True, slots=True)
class CycleResult:
    ok: bool
    error: str = ""
    cause: type[StunmeshError] | None = None


@dataclass(eq=False)
class PeerRuntime:
    """The engine's private per-peer bookkeeping; public state lives in ``status``, every
    deadline in the device's ``Schedule``."""

    cfg: PeerConfig
    status: PeerStatus
    store: Store
    guard: crypto.RecordGuard = field(default_factory=crypto.RecordGuard)
    traffic: TrafficWatch = field(default_factory=TrafficWatch)
    watch: asyncio.Task[None] | None = None  # follows the peer's record (stores that notify)
    watch_key: str = ""
    watch_news: bool = False  # the watch reported a new value the next fetch has to find
    ping_task: asyncio.Task[None] | None = None  # the check in flight (never awaited by the loop)
    ping_failures: int = 0
    ping_address: str = ""  # ping.target resolved (a host name is looked up now and then)

    @property
    def key(self) -> bytes:
        return self.cfg.public_key

    def cancel_tasks(self) -> None:
        """Its store watch and its ping check end with it."""
        for task in (self.watch, self.ping_task):
            if task is not None:
                task.cancel()
