"""The D-Bus layer: thin adapters that put the engine's model on the system bus (docs/dbus-api.md).

The daemon needs only ``start_daemon_bus`` (a ``BusKeeper``: ``failed`` and ``close``); tests
use ``start_bus`` for one connection; names live in ``names``.
The exports load on first use, so clients (stunmeshctl, the applet) can import
``stunmeshd.bus.names`` without importing the engine and the stores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stunmeshd.bus.connection import BusError, BusUnreachable
    from stunmeshd.bus.keeper import BusKeeper, start_daemon_bus
    from stunmeshd.bus.service import BusService, start_bus

_EXPORTS = {
    "BusError": "stunmeshd.bus.connection",
    "BusUnreachable": "stunmeshd.bus.connection",
    "BusKeeper": "stunmeshd.bus.keeper",
    "start_daemon_bus": "stunmeshd.bus.keeper",
    "BusService": "stunmeshd.bus.service",
    "start_bus": "stunmeshd.bus.service",
}

__all__ = [
    "BusError",
    "BusKeeper",
    "BusService",
    "BusUnreachable",
    "start_bus",
    "start_daemon_bus",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
