"""``io.github.stunmeshd.StunMesh1`` at ROOT: the daemon as a whole.

Lookups, whole-daemon actions (Refresh, Reload, SetLogLevel) and what the caller may do
(GetPermissions). ObjectManager at the same path lets a client mirror everything in one call.
"""

# No `from __future__ import annotations` (see peer.py).

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from dbus_fast import DBusError
from dbus_fast.service import PropertyAccess, dbus_method, dbus_property, dbus_signal

from stunmeshd import __version__, logs
from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import failed, invalid_args, translated
from stunmeshd.bus.names import MANAGER_IFACE, ROOT, Error, device_path
from stunmeshd.bus.options import NO_OPTIONS, REFRESH_OPTIONS, parse_options
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, texts
from stunmeshd.bus.refresh import run_refresh
from stunmeshd.bus.types import (
    DBusObjectPath,
    DBusStr,
    DBusUInt32,
    DBusUInt64,
    ObjectPaths,
    Options,
    StringMap,
    Strings,
)
from stunmeshd.errors import ConfigError
from stunmeshd.model import ManagerState

READ = PropertyAccess.READ
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
    ]
)


class ManagerInterface(TableInterface):
    """Adapts the engine and its model as a whole."""

    table = MANAGER_PROPERTIES
    arg_names: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "GetDevices": ("devices",),
        "GetDeviceByInterface": ("device",),
        "GetPermissions": ("permissions",),
        "DeviceAdded": ("device",),
        "DeviceRemoved": ("device",),
    }

    def __init__(self, ctx: BusContext) -> None:
        super().__init__(MANAGER_IFACE, ctx, ctx, ROOT)
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
        self.signal(MANAGER_IFACE, "DeviceAdded", "o", [path])

    def emit_device_removed(self, path: str) -> None:
        self.defer_changed("Devices")
        self.signal(MANAGER_IFACE, "DeviceRemoved", "o", [path])

    def emit_check_permissions(self) -> None:
        self.signal(MANAGER_IFACE, "CheckPermissions", "", [])

    # ---- signals (sent through ``emit_*``; the decorated stubs document them) ----------

    @dbus_signal(name="DeviceAdded")
    def device_added(self) -> DBusObjectPath:
        raise NotImplementedError  # documentation only: see emit_device_added

    @dbus_signal(name="DeviceRemoved")
    def device_removed(self) -> DBusObjectPath:
        raise NotImplementedError

    @dbus_signal(name="CheckPermissions")
    def check_permissions(self) -> None:
        raise NotImplementedError

    # ---- lookups -----------------------------------------------------------------------

    @dbus_method(name="GetDevices")
    def get_devices(self) -> ObjectPaths:
        return device_paths(self.ctx)

    @dbus_method(name="GetDeviceByInterface")
    def get_device_by_interface(self, ifname: DBusStr) -> DBusObjectPath:
        device = self.ctx.model.devices.get(ifname)
        if device is None:
            raise DBusError(
                Error.NO_SUCH_DEVICE, f"no managed WireGuard interface {caller_text(ifname)}"
            )
        return device_path(device.id)

    @dbus_method(name="GetPermissions")
    async def get_permissions(self) -> StringMap:
        """Action id -> ``yes`` / ``auth`` / ``no`` for the caller; never prompts."""
        with translated("GetPermissions"):
            return await self.ctx.auth.permissions()

    # ---- actions -----------------------------------------------------------------------

    @dbus_method(name="Refresh")
    async def refresh(self, options: Options) -> None:
        """Run a full cycle on every interface (polkit ``refresh``; option ``wait`` b)."""
        with translated("Refresh"):
            await self.ctx.auth.authorize(MANAGER_IFACE, "Refresh")
            opts = parse_options(options, REFRESH_OPTIONS)
            self._require_running()
            names = list(self.ctx.engine.workers)
            await run_refresh(
                self.ctx,
                self.ctx.engine.refresh(),
                wait=bool(opts.get("wait", False)),
                what="all interfaces",
                names=names,
            )

    @dbus_method(name="Reload")
    async def reload(self, options: Options) -> None:
        """Re-read the configuration and apply the difference (polkit ``reload``)."""
        with translated("Reload"):
            await self.ctx.auth.authorize(MANAGER_IFACE, "Reload")
            parse_options(options, NO_OPTIONS)
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

    @dbus_method(name="SetLogLevel")
    async def set_log_level(self, level: DBusStr) -> None:
        """debug, info, warning (or warn), error (polkit ``configure``)."""
        with translated("SetLogLevel"):
            await self.ctx.auth.authorize(MANAGER_IFACE, "SetLogLevel")
            if level.lower() not in logs.LEVELS:
                raise invalid_args(
                    f"unknown log level {caller_text(level)}; "
                    f"use one of {', '.join(sorted(logs.LEVELS))}"
                )
            logs.set_level(level)

    def _require_running(self) -> None:
        if self.ctx.model.state in (ManagerState.STOPPING, ManagerState.UNKNOWN):
            raise DBusError(Error.NOT_READY, "the daemon is not running")

    # ---- properties --------------------------------------------------------------------

    @dbus_property(access=READ, name="Version")
    def version(self) -> DBusStr:
        return self.prop("Version")

    @dbus_property(access=READ, name="State")
    def state(self) -> DBusUInt32:
        return self.prop("State")

    @dbus_property(access=READ, name="Devices")
    def devices(self) -> ObjectPaths:
        return self.prop("Devices")

    @dbus_property(access=READ, name="StunServers")
    def stun_servers(self) -> Strings:
        return self.prop("StunServers")

    @dbus_property(access=READ, name="RefreshInterval")
    def refresh_interval(self) -> DBusUInt64:
        return self.prop("RefreshInterval")
