"""``io.github.stunmeshd.StunMesh1.Device`` at ROOT/Devices/N: one managed WireGuard interface.

Read-only state, ``Refresh``, peer lookup by key, and the signals routing daemons and scripts
hook into (``EndpointChanged``, ``RefreshCompleted``).
"""

# No `from __future__ import annotations` (see peer.py).

import base64
import binascii
from collections.abc import Mapping
from typing import ClassVar

from dbus_fast import DBusError
from dbus_fast.service import PropertyAccess, dbus_method, dbus_property, dbus_signal

from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import invalid_args, translated
from stunmeshd.bus.names import DEVICE_IFACE, Error, device_path, peer_path
from stunmeshd.bus.options import REFRESH_OPTIONS, parse_options
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, text, texts
from stunmeshd.bus.refresh import run_refresh
from stunmeshd.bus.types import (
    DBusInt32,
    DBusObjectPath,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
    DBusUInt64,
    ObjectPaths,
    Options,
    Strings,
    SuccessAndError,
)
from stunmeshd.model import DeviceStatus

READ = PropertyAccess.READ


def peer_paths(device: DeviceStatus) -> list[str]:
    return [peer_path(p.id) for p in sorted(device.peers.values(), key=lambda p: p.id)]


DEVICE_PROPERTIES = PropertyTable(
    [
        Prop("Interface", "s", lambda d: text(d.interface), ("interface",), ""),
        Prop("Ifindex", "i", lambda d: number(d.ifindex), ("ifindex",), 0),
        Prop("Backend", "s", lambda d: text(d.backend), ("backend",), ""),
        Prop("PublicKey", "s", lambda d: text(d.public_key), ("public_key",), ""),
        Prop("ListenPort", "q", lambda d: number(d.listen_port), ("listen_port",), 0),
        Prop("FwMark", "u", lambda d: number(d.fwmark), ("fwmark",), 0),
        Prop("Protocol", "s", lambda d: text(d.protocol), ("protocol",), ""),
        Prop("State", "u", lambda d: number(d.state), ("state",), 0),
        Prop("LastError", "s", lambda d: text(d.last_error), ("last_error",), ""),
        Prop(
            "PublicEndpoints", "as", lambda d: texts(d.public_endpoints), ("public_endpoints",), []
        ),
        Prop("NatMapping", "s", lambda d: text(d.nat_mapping), ("nat_mapping",), "unknown"),
        Prop("LastRefresh", "t", lambda d: number(d.last_refresh), ("last_refresh",), 0),
        Prop("NextRefresh", "t", lambda d: number(d.next_refresh), ("next_refresh",), 0),
        Prop("Peers", "ao", peer_paths, ("peers",), []),
    ]
)


class DeviceInterface(TableInterface):
    """Adapts one ``DeviceStatus``."""

    table = DEVICE_PROPERTIES
    arg_names: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "GetPeerByPublicKey": ("peer",),
        "PeerAdded": ("peer",),
        "PeerRemoved": ("peer",),
        "RefreshCompleted": ("success", "error"),
        "EndpointChanged": ("endpoints",),
    }

    def __init__(self, ctx: BusContext, status: DeviceStatus) -> None:
        super().__init__(DEVICE_IFACE, ctx, status, device_path(status.id))
        self.status = status

    # ---- signals (sent through ``emit_*``; the decorated stubs document them) ----------

    def emit_peer_added(self, path: str) -> None:
        self.defer_changed("Peers")
        self.signal(DEVICE_IFACE, "PeerAdded", "o", [path])

    def emit_peer_removed(self, path: str) -> None:
        self.defer_changed("Peers")
        self.signal(DEVICE_IFACE, "PeerRemoved", "o", [path])

    def emit_refresh_completed(self, success: bool, error: str) -> None:
        self.signal(DEVICE_IFACE, "RefreshCompleted", "bs", [bool(success), text(error)])

    def emit_endpoint_changed(self, endpoints: object) -> None:
        self.signal(DEVICE_IFACE, "EndpointChanged", "as", [texts(endpoints)])

    @dbus_signal(name="PeerAdded")
    def peer_added(self) -> DBusObjectPath:
        raise NotImplementedError  # documentation only: see emit_peer_added

    @dbus_signal(name="PeerRemoved")
    def peer_removed(self) -> DBusObjectPath:
        raise NotImplementedError

    @dbus_signal(name="RefreshCompleted")
    def refresh_completed(self) -> SuccessAndError:
        raise NotImplementedError

    @dbus_signal(name="EndpointChanged")
    def endpoint_changed(self) -> Strings:
        raise NotImplementedError

    # ---- methods -----------------------------------------------------------------------

    @dbus_method(name="Refresh")
    async def refresh(self, options: Options) -> None:
        """Run a full cycle on this interface (polkit ``refresh``; option ``wait`` b)."""
        with translated("Refresh"):
            ifname = self.status.interface
            await self.ctx.auth.authorize(DEVICE_IFACE, "Refresh", interface=ifname)
            opts = parse_options(options, REFRESH_OPTIONS)
            if self.ctx.engine.workers.get(ifname) is None:
                raise DBusError(Error.NO_SUCH_DEVICE, f"{ifname} is no longer managed")
            await run_refresh(
                self.ctx,
                self.ctx.engine.refresh(ifname),
                wait=bool(opts.get("wait", False)),
                what=ifname,
                names=[ifname],
            )

    @dbus_method(name="GetPeerByPublicKey")
    def get_peer_by_public_key(self, key: DBusStr) -> DBusObjectPath:
        """The Peer object of ``key`` (base64, as ``wg`` prints it) on this interface."""
        with translated("GetPeerByPublicKey"):
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise invalid_args("not a WireGuard public key (base64 of 32 bytes)")
            peer = self.status.peers.get(base64.b64encode(raw).decode())
            if peer is None:
                raise DBusError(
                    Error.NO_SUCH_PEER,
                    f"no managed peer {caller_text(key)} on {self.status.interface}",
                )
            return peer_path(peer.id)

    # ---- properties --------------------------------------------------------------------

    @dbus_property(access=READ, name="Interface")
    def interface(self) -> DBusStr:
        return self.prop("Interface")

    @dbus_property(access=READ, name="Ifindex")
    def ifindex(self) -> DBusInt32:
        return self.prop("Ifindex")

    @dbus_property(access=READ, name="Backend")
    def backend(self) -> DBusStr:
        return self.prop("Backend")

    @dbus_property(access=READ, name="PublicKey")
    def public_key(self) -> DBusStr:
        return self.prop("PublicKey")

    @dbus_property(access=READ, name="ListenPort")
    def listen_port(self) -> DBusUInt16:
        return self.prop("ListenPort")

    @dbus_property(access=READ, name="FwMark")
    def fwmark(self) -> DBusUInt32:
        return self.prop("FwMark")

    @dbus_property(access=READ, name="Protocol")
    def protocol(self) -> DBusStr:
        return self.prop("Protocol")

    @dbus_property(access=READ, name="State")
    def state(self) -> DBusUInt32:
        return self.prop("State")

    @dbus_property(access=READ, name="LastError")
    def last_error(self) -> DBusStr:
        return self.prop("LastError")

    @dbus_property(access=READ, name="PublicEndpoints")
    def public_endpoints(self) -> Strings:
        return self.prop("PublicEndpoints")

    @dbus_property(access=READ, name="NatMapping")
    def nat_mapping(self) -> DBusStr:
        return self.prop("NatMapping")

    @dbus_property(access=READ, name="LastRefresh")
    def last_refresh(self) -> DBusUInt64:
        return self.prop("LastRefresh")

    @dbus_property(access=READ, name="NextRefresh")
    def next_refresh(self) -> DBusUInt64:
        return self.prop("NextRefresh")

    @dbus_property(access=READ, name="Peers")
    def peers(self) -> ObjectPaths:
        return self.prop("Peers")
