"""Which bus to connect to: ``system``, ``session`` or a D-Bus address (client-safe import)."""

from __future__ import annotations

from typing import Any

from dbus_fast import BusType


def bus_kwargs(address: str) -> dict[str, Any]:
    """``system`` / ``session`` / a D-Bus address -> MessageBus keyword arguments.

    ``system`` honours ``DBUS_SYSTEM_BUS_ADDRESS`` (dbus-fast reads it), as every D-Bus tool does.
    """
    if address == "system":
        return {"bus_type": BusType.SYSTEM}
    if address == "session":
        return {"bus_type": BusType.SESSION}
    return {"bus_address": address}
