"""``io.github.stunmeshd.StunMesh1.Device`` at ROOT/Devices/N: one managed WireGuard interface.

Read-only state, ``Refresh``, peer lookup by key, and the signals routing daemons and scripts
hook into (``EndpointChanged``, ``RefreshCompleted``).
"""

# No `from __future__ import annotations` (see peer.py).

import base64
import binascii

from dbus_fast import DBusError

from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.errors import invalid_args
from stunmeshd.bus.members import bus_method, bus_signal
from stunmeshd.bus.names import DEVICE_IFACE, Error, device_path, peer_path
from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface, number, text, texts
from stunmeshd.bus.refresh import Refreshable, RefreshTarget
from stunmeshd.bus.types import (
    DBusObjectPath,
    DBusStr,
    Strings,
    SuccessAndError,
)
from stunmeshd.model import DeviceStatus


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
        Prop("PortMapping", "s", lambda d: text(d.port_mapping), ("port_mapping",), ""),
        Prop(
            "PortMappingEndpoint",
            "s",
            lambda d: text(d.port_mapping_endpoint),
            ("port_mapping_endpoint",),
            "",
        ),
        Prop(
            "PortMappingExpires",
            "t",
            lambda d: number(d.port_mapping_expires),
            ("port_mapping_expires",),
            0,
        ),
        Prop(
            "PortMappingReason",
            "s",
            lambda d: text(d.port_mapping_reason),
            ("port_mapping_reason",),
            "",
        ),
        Prop("EndpointSource", "s", lambda d: text(d.endpoint_source), ("endpoint_source",), ""),
        Prop("LastRefresh", "t", lambda d: number(d.last_refresh), ("last_refresh",), 0),
        Prop("NextRefresh", "t", lambda d: number(d.next_refresh), ("next_refresh",), 0),
        Prop("Peers", "ao", peer_paths, ("peers",), []),
    ]
)


class DeviceInterface(Refreshable, TableInterface):
    """Adapts one ``DeviceStatus``."""

    interface = DEVICE_IFACE
    table = DEVICE_PROPERTIES

    def __init__(self, ctx: BusContext, status: DeviceStatus) -> None:
        super().__init__(ctx, status, device_path(status.id))
        self.status = status

    def polkit_details(self) -> dict[str, str]:
        return {"interface": self.status.interface}

    # ---- signals (sent through ``emit_*``; the declarations give name and signature) -----

    def emit_peer_added(self, path: str) -> None:
        self.defer_changed("Peers")
        self.send("PeerAdded", path)

    def emit_peer_removed(self, path: str) -> None:
        self.defer_changed("Peers")
        self.send("PeerRemoved", path)

    def emit_refresh_completed(self, success: bool, error: str) -> None:
        self.send("RefreshCompleted", bool(success), text(error))

    def emit_endpoint_changed(self, endpoints: object) -> None:
        self.send("EndpointChanged", texts(endpoints))

    @bus_signal("PeerAdded", args=("peer",))
    def peer_added(self) -> DBusObjectPath:
        raise NotImplementedError  # declaration only: see emit_peer_added

    @bus_signal("PeerRemoved", args=("peer",))
    def peer_removed(self) -> DBusObjectPath:
        raise NotImplementedError

    @bus_signal("RefreshCompleted", args=("success", "error"))
    def refresh_completed(self) -> SuccessAndError:
        raise NotImplementedError

    @bus_signal("EndpointChanged", args=("endpoints",))
    def endpoint_changed(self) -> Strings:
        raise NotImplementedError

    # ---- methods (Refresh: bus/refresh.py) ---------------------------------------------

    def refresh_target(self) -> RefreshTarget:
        ifname = self.status.interface
        if self.ctx.engine.workers.get(ifname) is None:
            raise DBusError(Error.NO_SUCH_DEVICE, f"{ifname} is no longer managed")
        return RefreshTarget(self.ctx.engine.refresh(ifname), ifname, [ifname])

    @bus_method("GetPeerByPublicKey", public=True, out=("peer",))
    def get_peer_by_public_key(self, key: DBusStr) -> DBusObjectPath:
        """The Peer object of ``key`` (base64, as ``wg`` prints it) on this interface."""
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
