"""Refresh, the one method Manager, Device and Peer share: trigger, or wait boundedly for the
outcome. Each object says only what it refreshes (``refresh_target``).

The engine coalesces concurrent requests, so many callers cost one cycle. With ``wait`` the
call returns when the cycle ends, but never later than WAIT_BOUND, safely under the 25 s default
client timeout, so a slow store gives the caller ``Error.Timeout`` rather than ``NoReply``; the
cycle itself goes on.
"""

# No `from __future__ import annotations`: the Refresh declaration needs real annotations
# (bus/members.py refuses strings).

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import DBusError

from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import error_name_for
from stunmeshd.bus.members import CheckedOptions, bus_method
from stunmeshd.bus.names import ACTION_REFRESH, Error
from stunmeshd.bus.options import REFRESH_OPTIONS
from stunmeshd.engine import CycleResult

WAIT_BOUND = 20.0  # s


@dataclass(frozen=True, slots=True)
class RefreshTarget:
    """What one Refresh runs, and how its errors name it."""

    cycle: Coroutine[Any, Any, list[CycleResult]]
    what: str  # "all interfaces", "wg0", "peer office on wg0"
    names: Sequence[str] = ()  # one per cycle result, to label failures


class Refreshable:
    """Mixin for an exported object with ``Refresh``: the declaration and body live here."""

    ctx: BusContext

    def refresh_target(self) -> RefreshTarget:
        """What to refresh now; raise the named D-Bus error when the object is gone."""
        raise NotImplementedError

    @bus_method("Refresh", action=ACTION_REFRESH, budget=True, options=REFRESH_OPTIONS)
    async def refresh(self, options: CheckedOptions) -> None:
        """Run this object's cycle now (polkit ``refresh``, the Refresh budget; ``wait`` b);
        with ``wait``, raise the named error of its first failure."""
        target = self.refresh_target()
        task = self.ctx.spawn(target.cycle, name=f"refresh {target.what}")
        if not options.get("wait", False):
            await asyncio.sleep(0)  # let the request reach the engine before we answer
            return
        try:
            async with asyncio.timeout(WAIT_BOUND):
                results = await asyncio.shield(task)
        except TimeoutError:
            raise DBusError(
                Error.TIMEOUT,
                f"refresh of {target.what} did not end within {WAIT_BOUND:.0f} s "
                "(it goes on in the background)",
            ) from None
        raise_for_results(results, target.names)


def raise_for_results(results: Sequence[CycleResult], names: Sequence[str] = ()) -> None:
    failures = [(i, r) for i, r in enumerate(results) if not r.ok]
    if not failures:
        return
    labelled = len(names) == len(results)
    parts = [
        f"{names[i]}: {r.error or 'failed'}" if labelled else (r.error or "failed")
        for i, r in failures
    ]
    raise DBusError(error_name_for(failures[0][1].cause), "; ".join(parts))
