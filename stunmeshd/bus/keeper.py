"""Keeping the daemon on the bus: when the connection goes, connect again and re-own the name.

A daemon without its bus name is a daemon no client can reach, and systemd cannot help while
the process lives on. So a lost connection (dbus-daemon restarted, or it dropped us) is followed
by a fresh connection to the same address, retried every RECONNECT_INTERVAL at most, on which a
fresh ``BusService`` exports the whole tree from the model as it is now and claims the name. If
the name cannot be had (another process owns it, or the bus policy refuses it), ``failed``
resolves and the daemon exits non-zero, so the unit's ``Restart=on-failure`` takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from stunmeshd.bus.connection import BusError, BusUnreachable
from stunmeshd.bus.service import BusService, start_bus

log = logging.getLogger(__name__)

RECONNECT_FIRST = 0.05  # s before the first attempt: a dropped connection comes back at once
RECONNECT_INTERVAL = 1.0  # s between attempts at most, while the bus is away


class BusKeeper:
    """The service on ``address``, reconnected for as long as the daemon runs."""

    def __init__(self, engine: Any, address: str, service: BusService) -> None:
        self.engine = engine
        self.address = address
        self.service: BusService | None = service
        self.failed: asyncio.Future[BusError] = asyncio.get_running_loop().create_future()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="bus keeper")

    @classmethod
    async def start(cls, engine: Any, address: str) -> BusKeeper:
        """Connect and own the name (BusError / BusUnreachable when that fails now)."""
        return cls(engine, address, await start_bus(engine, address))

    async def _keep(self) -> None:
        while self.service is not None:
            reason = await self.service.wait_disconnected()
            if self._closing:
                return
            log.error("lost the D-Bus connection (%s); reconnecting", reason)
            await self.service.close()
            self.service = None
            try:
                self.service = await self._reconnect()
            except BusError as exc:
                log.error("cannot get back on the bus: %s", exc)
                if not self.failed.done():
                    self.failed.set_result(exc)
                return

    async def _reconnect(self) -> BusService:
        loop = asyncio.get_running_loop()
        began = loop.time()
        delay = RECONNECT_FIRST
        attempts = 0
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_INTERVAL)
            attempts += 1
            try:
                service = await start_bus(self.engine, self.address)
            except BusUnreachable as exc:
                if attempts == 1:
                    log.warning(
                        "bus unreachable, retrying at most %.0f s apart: %s",
                        RECONNECT_INTERVAL,
                        exc,
                    )
                continue
            log.info(
                "back on the bus after %.2f s (%d attempts) unique=%s",
                loop.time() - began,
                attempts,
                service.bus.unique_name,
            )
            return service

    async def close(self) -> None:
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self.service is not None:
            await self.service.close()
            self.service = None


async def start_daemon_bus(engine: Any, address: str = "system") -> BusKeeper | None:
    """The daemon's bus: a machine without a system bus (a container, the lab) runs the daemon
    without D-Bus, with a warning; an explicit bus address that does not work, or a name someone
    else owns, is fatal (BusError)."""
    try:
        return await BusKeeper.start(engine, address)
    except BusUnreachable as exc:
        if address != "system":
            raise
        log.warning("running without D-Bus: %s", exc)
        return None
