"""The D-Bus layer: thin adapters that put the engine's model on the system bus (dbus-api.md).

The daemon needs only ``start_daemon_bus`` (a ``BusKeeper``: ``failed`` and ``close``); tests
use ``start_bus`` for one connection; names live in ``names``.
"""

from stunmeshd.bus.connection import BusError, BusUnreachable
from stunmeshd.bus.keeper import BusKeeper, start_daemon_bus
from stunmeshd.bus.service import BusService, start_bus

__all__ = [
    "BusError",
    "BusKeeper",
    "BusService",
    "BusUnreachable",
    "start_bus",
    "start_daemon_bus",
]
