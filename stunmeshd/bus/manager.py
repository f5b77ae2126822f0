"""``io.github.stunmeshd.StunMesh1`` at ROOT: the daemon as a whole.

Lookups, whole-daemon actions (Refresh, Reload, SetLogLevel) and what the caller may do
(GetPermissions). ObjectManager at the same path lets a client mirror everything in one call.
"""

# No `from __future__ import annotations` (see peer.py).

import asyncio
from typing import Any

from dbus_fast import DBusError

from stunmeshd import __version__, logs
from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import failed, invalid_args
from stunmeshd.bus.members import CheckedOptions, bus_method, bus_signal
from stunmeshd.bus.names import (
    ACTION_CONFIGURE,
    ACTION_RELOAD,
    MANAGER_IFACE,
    ROOT,
    Error,
    device_path,
)
from stunmeshd.bus.options import NO_OPTIONS
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, texts
from stunmeshd.bus.refresh import Refreshable, RefreshTarget
from stunmeshd.bus.types import (
    DBusObjectPath,
    DBusStr,
    ObjectPaths,
    StringMap,
)
from stunmeshd.errors import ConfigError
from stunmeshd.model import ManagerState

RELOAD_BOUND = 20.0  # s: a reload waits for stores to close; answer before the client gives up


def device_paths(ctx: BusContext) -> list[str]:
    return [device_path(d.id) for d in sorted(ctx.model.devices.values(), key=lambda d: d.id)]


def _interval_us(ctx: BusContext) -> int:
    return int(float(ctx.engine.config.refresh_interval) * 1_000_000)


MANAGER_PROPERTIES = PropertyTable(
    [
        Prop("Version", "s", lambda ctx: __version__, (), ""),
        Prop("State", "u", lambda ctx: number(ctx.model.state), ("state",), 0),
        Prop("Devices", "ao", device_paths, ("devices",), []),
        Prop(
            "StunServers",
            "as",
            lambda ctx: texts(ctx.engine.config.stun_servers),
            ("stun_servers",),
            [],
        ),
        Prop("RefreshInterval", "t", _interval_us, ("refresh_interval",), 0),
        Prop("LogLevel", "s", lambda ctx: logs.current_level(), (), ""),
    ]
)


class ManagerInterface(Refreshable, TableInterface):
    """Adapts the engine and its model as a whole."""

    interface = MANAGER_IFACE
    table = MANAGER_PROPERTIES

    def __init__(self, ctx: BusContext) -> None:
        super().__init__(ctx, ctx, ROOT)
        self._config_seen: tuple[Any, ...] = self._config_key()

    # ---- changes -----------------------------------------------------------------------

    def _config_key(self) -> tuple[Any, ...]:
        config = self.ctx.engine.config
        return (tuple(config.stun_servers), config.refresh_interval)

    def check_config(self) -> None:
        """Announce StunServers/RefreshInterval when a reload (ours or SIGHUP) changed them."""
        key = self._config_key()
        if key != self._config_seen:
            self._config_seen = key
            self.emit_changed(names=("StunServers", "RefreshInterval"))

    def emit_device_added(self, path: str) -> None:
        self.defer_changed("Devices")
        self.send("DeviceAdded", path)

    def emit_device_removed(self, path: str) -> None:
        self.defer_changed("Devices")
        self.send("DeviceRemoved", path)

    def emit_check_permissions(self) -> None:
        self.send("CheckPermissions")

    # ---- signals (sent through ``emit_*``; the declarations give name and signature) -----

    @bus_signal("DeviceAdded", args=("device",))
    def device_added(self) -> DBusObjectPath:
        raise NotImplementedError  # declaration only: see emit_device_added

    @bus_signal("DeviceRemoved", args=("device",))
    def device_removed(self) -> DBusObjectPath:
        raise NotImplementedError

    @bus_signal("CheckPermissions")
    def check_permissions(self) -> None:
        raise NotImplementedError

    # ---- lookups -----------------------------------------------------------------------

    @bus_method("GetDevices", public=True, out=("devices",))
    def get_devices(self) -> ObjectPaths:
        return device_paths(self.ctx)

    @bus_method("GetDeviceByInterface", public=True, out=("device",))
    def get_device_by_interface(self, ifname: DBusStr) -> DBusObjectPath:
        device = self.ctx.model.devices.get(ifname)
        if device is None:
            raise DBusError(
                Error.NO_SUCH_DEVICE, f"no managed WireGuard interface {caller_text(ifname)}"
            )
        return device_path(device.id)

    @bus_method("GetPermissions", public=True, out=("permissions",))
    async def get_permissions(self) -> StringMap:
        """Action id -> ``yes`` / ``auth`` / ``no`` for the caller; never prompts."""
        return await self.ctx.auth.permissions()

    # ---- actions (Refresh: bus/refresh.py) ---------------------------------------------

    def refresh_target(self) -> RefreshTarget:
        self._require_running()
        names = list(self.ctx.engine.workers)
        return RefreshTarget(self.ctx.engine.refresh(), "all interfaces", names)

    @bus_method("Reload", action=ACTION_RELOAD, options=NO_OPTIONS)
    async def reload(self, options: CheckedOptions) -> None:
        """Re-read the configuration and apply the difference (polkit ``reload``)."""
        self._require_running()
        reload = getattr(self.ctx.engine, "reload", None)
        if reload is None:
            raise failed("reload not supported")
        try:
            async with asyncio.timeout(RELOAD_BOUND):
                await asyncio.shield(self.ctx.spawn(reload(), name="reload"))
        except ConfigError as exc:
            raise failed(f"configuration refused, the running one stays: {exc}") from None
        except TimeoutError:
            raise DBusError(
                Error.TIMEOUT, f"reload did not end within {RELOAD_BOUND:.0f} s"
            ) from None
        self.check_config()

    @bus_method("SetLogLevel", action=ACTION_CONFIGURE)
    async def set_log_level(self, level: DBusStr) -> None:
        """debug, info, warning (or warn), error (polkit ``configure``)."""
        if level.lower() not in logs.LEVELS:
            raise invalid_args(
                f"unknown log level {caller_text(level)}; "
                f"use one of {', '.join(sorted(logs.LEVELS))}"
            )
        logs.set_level(level)
        self.emit_changed(names=["LogLevel"])

    def _require_running(self) -> None:
        if self.ctx.model.state in (ManagerState.STOPPING, ManagerState.UNKNOWN):
            raise DBusError(Error.NOT_READY, "the daemon is not running")
