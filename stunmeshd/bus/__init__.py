"""The D-Bus layer: thin adapters that put the engine's model on the system bus (dbus-api.md).

The daemon needs only ``start_bus`` and ``BusService.close``; names live in ``names``.
"""

from stunmeshd.bus.connection import BusError, BusUnreachable
from stunmeshd.bus.service import BusService, start_bus, start_daemon_bus

__all__ = ["BusError", "BusService", "BusUnreachable", "start_bus", "start_daemon_bus"]
