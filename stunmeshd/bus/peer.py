"""``io.github.stunmeshd.StunMesh1.Peer`` at ROOT/Peers/N: one peer of one managed interface.

Read-only state plus ``Refresh``; the store's options (tokens) never appear, only its name.
"""

# No `from __future__ import annotations` in the interface modules: dbus-fast would read the
# string "None" of `-> None` as a signature; evaluated annotations give it the real None.

from typing import Any

from dbus_fast import DBusError
from dbus_fast.service import PropertyAccess, dbus_method, dbus_property

from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import translated
from stunmeshd.bus.names import PEER_IFACE, Error, device_path, peer_path
from stunmeshd.bus.options import REFRESH_OPTIONS, parse_options
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, text
from stunmeshd.bus.refresh import run_refresh
from stunmeshd.bus.types import DBusObjectPath, DBusStr, DBusUInt32, DBusUInt64, Options
from stunmeshd.model import PeerStatus

READ = PropertyAccess.READ

PEER_PROPERTIES = PropertyTable(
    [
        Prop("Device", "o", lambda p: device_path(p.device_id), ("device_id",), "/"),
        Prop("Name", "s", lambda p: text(p.name), ("name",), ""),
        Prop("PublicKey", "s", lambda p: text(p.public_key), ("public_key",), ""),
        Prop("Store", "s", lambda p: text(p.store), ("store",), ""),
        Prop("State", "u", lambda p: number(p.state), ("state",), 0),
        Prop("LastError", "s", lambda p: text(p.last_error), ("last_error",), ""),
        Prop("Endpoint", "s", lambda p: text(p.endpoint), ("endpoint",), ""),
        Prop(
            "DiscoveredEndpoint",
            "s",
            lambda p: text(p.discovered_endpoint),
            ("discovered_endpoint",),
            "",
        ),
        Prop(
            "LatestHandshake", "t", lambda p: number(p.latest_handshake), ("latest_handshake",), 0
        ),
        Prop("LastUpdate", "t", lambda p: number(p.last_update), ("last_update",), 0),
        Prop("RxBytes", "t", lambda p: number(p.rx_bytes), ("rx_bytes",), 0),
        Prop("TxBytes", "t", lambda p: number(p.tx_bytes), ("tx_bytes",), 0),
    ]
)


class PeerInterface(TableInterface):
    """Adapts one ``PeerStatus``."""

    table = PEER_PROPERTIES

    def __init__(self, ctx: BusContext, status: PeerStatus) -> None:
        super().__init__(PEER_IFACE, ctx, status, peer_path(status.id))
        self.status = status

    # ---- methods -----------------------------------------------------------------------

    @dbus_method(name="Refresh")
    async def refresh(self, options: Options) -> None:
        """Fetch and apply this peer's record now (polkit ``refresh``; option ``wait`` b)."""
        with translated("Refresh"):
            await self.ctx.auth.authorize(PEER_IFACE, "Refresh", interface=self.status.interface)
            opts = parse_options(options, REFRESH_OPTIONS)
            key = self.status.public_key
            if self.ctx.model.find_peer(key) is not self.status:
                raise DBusError(Error.NO_SUCH_PEER, "the peer is no longer managed")
            await run_refresh(
                self.ctx,
                self._refresh_peer(key),
                wait=bool(opts.get("wait", False)),
                what=f"peer {self.status.name} on {self.status.interface}",
            )

    async def _refresh_peer(self, key: str) -> list[Any]:
        return [await self.ctx.engine.refresh_peer(key)]

    # ---- properties --------------------------------------------------------------------

    @dbus_property(access=READ, name="Device")
    def device(self) -> DBusObjectPath:
        return self.prop("Device")

    @dbus_property(access=READ, name="Name")
    def name_(self) -> DBusStr:
        return self.prop("Name")

    @dbus_property(access=READ, name="PublicKey")
    def public_key(self) -> DBusStr:
        return self.prop("PublicKey")

    @dbus_property(access=READ, name="Store")
    def store(self) -> DBusStr:
        return self.prop("Store")

    @dbus_property(access=READ, name="State")
    def state(self) -> DBusUInt32:
        return self.prop("State")

    @dbus_property(access=READ, name="LastError")
    def last_error(self) -> DBusStr:
        return self.prop("LastError")

    @dbus_property(access=READ, name="Endpoint")
    def endpoint(self) -> DBusStr:
        return self.prop("Endpoint")

    @dbus_property(access=READ, name="DiscoveredEndpoint")
    def discovered_endpoint(self) -> DBusStr:
        return self.prop("DiscoveredEndpoint")

    @dbus_property(access=READ, name="LatestHandshake")
    def latest_handshake(self) -> DBusUInt64:
        return self.prop("LatestHandshake")

    @dbus_property(access=READ, name="LastUpdate")
    def last_update(self) -> DBusUInt64:
        return self.prop("LastUpdate")

    @dbus_property(access=READ, name="RxBytes")
    def rx_bytes(self) -> DBusUInt64:
        return self.prop("RxBytes")

    @dbus_property(access=READ, name="TxBytes")
    def tx_bytes(self) -> DBusUInt64:
        return self.prop("TxBytes")
