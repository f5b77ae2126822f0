"""``io.github.stunmeshd.StunMesh1.Peer`` at ROOT/Peers/N: one peer of one managed interface.

Read-only state plus ``Refresh``; the store's options (tokens) never appear, only its name.
"""

# No `from __future__ import annotations` in the interface modules: member declarations need
# evaluated annotations (bus/members.py refuses strings, which dbus-fast may misread).

from typing import Any

from dbus_fast import DBusError

from stunmeshd.bus.context import BusContext
from stunmeshd.bus.names import PEER_IFACE, Error, device_path, peer_path
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, text
from stunmeshd.bus.refresh import Refreshable, RefreshTarget
from stunmeshd.model import PeerStatus

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
        Prop("Description", "s", lambda p: text(p.description), ("description",), ""),
    ]
)


class PeerInterface(Refreshable, TableInterface):
    """Adapts one ``PeerStatus``."""

    interface = PEER_IFACE
    table = PEER_PROPERTIES

    def __init__(self, ctx: BusContext, status: PeerStatus) -> None:
        super().__init__(ctx, status, peer_path(status.id))
        self.status = status

    def polkit_details(self) -> dict[str, str]:
        return {"interface": self.status.interface}

    # ---- methods (Refresh: bus/refresh.py) ---------------------------------------------

    def refresh_target(self) -> RefreshTarget:
        """This peer's record, fetched and applied now."""
        key = self.status.public_key
        if self.ctx.model.find_peer(key) is not self.status:
            raise DBusError(Error.NO_SUCH_PEER, "the peer is no longer managed")
        return RefreshTarget(
            self._refresh_peer(key), f"peer {self.status.name} on {self.status.interface}"
        )

    async def _refresh_peer(self, key: str) -> list[Any]:
        return [await self.ctx.engine.refresh_peer(key)]
