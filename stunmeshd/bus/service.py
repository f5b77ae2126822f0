"""The D-Bus service: exports the model as objects and turns model events into signals.

One ``BusService`` lives as long as one bus connection; ``keeper.BusKeeper`` replaces it when
the connection is lost. Nothing here decides anything: it only
adapts the model and forwards requests to the engine (firewalld style).

Start-up order matters: objects are exported and the model subscribed to before the name is
requested, so a client that sees the name never sees a half-built tree, and no event falls
between the initial export and the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.service import ServiceInterface

from stunmeshd.bus import auth
from stunmeshd.bus.auth import Authorizer
from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.connection import (
    StunMeshBus,
    claim_name,
    connect,
    read_machine_id,
)
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.device import DeviceInterface
from stunmeshd.bus.errors import invalid_args
from stunmeshd.bus.manager import ManagerInterface
from stunmeshd.bus.members import guarded_actions, method_policy
from stunmeshd.bus.names import (
    BUS_NAME,
    INTROSPECTABLE_IFACE,
    OBJECT_MANAGER_IFACE,
    PEER_STD_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
)
from stunmeshd.bus.peer import PeerInterface
from stunmeshd.bus.properties import TableInterface
from stunmeshd.engine import Engine
from stunmeshd.model import (
    Changed,
    DeviceAdded,
    DeviceRemoved,
    DeviceStatus,
    EndpointChanged,
    Event,
    ManagerChanged,
    PeerAdded,
    PeerRemoved,
    PeerStatus,
    RefreshCompleted,
)

log = logging.getLogger(__name__)

INTERFACES = (ManagerInterface, DeviceInterface, PeerInterface)
# (interface, member) -> Rule, read from the @bus_method declarations (for tests and docs)
METHOD_POLICY = method_policy(INTERFACES)


class BusService:
    """The exported tree for one engine on one bus connection."""

    def __init__(self, bus: StunMeshBus, engine: Engine, *, name: str = BUS_NAME) -> None:
        self.bus = bus
        self.engine = engine
        self.name = name
        self.auth = Authorizer(
            bus, actions=guarded_actions(INTERFACES), on_changed=self._polkit_changed
        )
        self.ctx = BusContext(bus=bus, engine=engine, auth=self.auth)
        self.manager = ManagerInterface(self.ctx)
        self.devices: dict[int, DeviceInterface] = {}  # by model id
        self.peers: dict[int, PeerInterface] = {}
        self._signatures: dict[tuple[str, str], str] = {}  # (interface, member) -> in-signature
        self._objects: dict[str, TableInterface] = {}  # path -> our interface there
        self._closed = False
        self.machine_id = ""

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Export everything, follow the model, then own the name (BusError if we cannot)."""
        self.bus.add_message_handler(auth.capture)
        self.bus.add_message_handler(self._check_signature)
        self.bus.add_message_handler(self._fast_reads)
        self.bus.add_message_handler(self._standard)
        self.machine_id = await asyncio.to_thread(read_machine_id)
        await self.auth.start()
        # nobody can know our unique name yet: export the initial tree without a signal storm
        self.bus.announce = False
        try:
            self._export(ROOT, self.manager)
            for device in list(self.engine.model.devices.values()):
                self._add_device(device)
                for peer in list(device.peers.values()):
                    self._add_peer(peer)
        finally:
            self.bus.announce = True
        self.engine.model.subscribe(self.on_event)
        await claim_name(self.bus, self.name)
        log.info("on the bus name=%s unique=%s", self.name, self.bus.unique_name)

    async def wait_disconnected(self) -> str:
        """Wait until the connection is gone (``keeper`` then reconnects); returns why."""
        try:
            # shielded: cancelling this wait must not cancel the bus's own disconnect future
            await asyncio.shield(self.bus.wait_for_disconnect())
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return "disconnected"

    async def close(self) -> None:
        """Leave the bus: unsubscribe, stop background calls, disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            self.engine.model.unsubscribe(self.on_event)
        except ValueError:
            pass
        await self.ctx.close()
        with contextlib.suppress(Exception):  # already gone when the bus went first
            self.bus.disconnect()
        try:
            await self.bus.wait_for_disconnect()
        except Exception as exc:  # a broken connection is still a closed one
            log.debug("bus disconnect: %s", exc)

    # ---- model events -> objects and signals -------------------------------------------

    def on_event(self, event: Event) -> None:
        if self._closed:
            return
        match event:
            case Changed(obj=DeviceStatus() as device, changes=changes):
                iface = self.devices.get(device.id)
                if iface is not None:
                    iface.emit_changed(changes)
            case Changed(obj=PeerStatus() as peer, changes=changes):
                peer_iface = self.peers.get(peer.id)
                if peer_iface is not None:
                    peer_iface.emit_changed(changes)
            case DeviceAdded(device=device):
                self._add_device(device)
            case DeviceRemoved(device=device):
                self._remove_device(device)
            case PeerAdded(peer=peer):
                self._add_peer(peer)
            case PeerRemoved(peer=peer):
                self._remove_peer(peer)
            case RefreshCompleted(device=device, success=success, error=error):
                iface = self.devices.get(device.id)
                if iface is not None:
                    iface.emit_refresh_completed(success, error)
            case EndpointChanged(device=device, endpoints=endpoints):
                iface = self.devices.get(device.id)
                if iface is not None:
                    iface.emit_endpoint_changed(endpoints)
            case ManagerChanged(changes=changes):
                self.manager.emit_changed(changes)
        self.manager.check_config()

    def _add_device(self, device: DeviceStatus) -> None:
        if device.id in self.devices:
            return
        iface = DeviceInterface(self.ctx, device)
        self.devices[device.id] = iface
        self._export(iface.path, iface)
        self.manager.emit_device_added(iface.path)

    def _remove_device(self, device: DeviceStatus) -> None:
        # the model removes a device's peers first; this only guards against a missed event
        for peer_iface in [p for p in self.peers.values() if p.status.device_id == device.id]:
            self._remove_peer(peer_iface.status)
        iface = self.devices.pop(device.id, None)
        if iface is None:
            return
        self._unexport(iface)
        self.manager.emit_device_removed(iface.path)

    def _add_peer(self, peer: PeerStatus) -> None:
        if peer.id in self.peers:
            return
        device = self.devices.get(peer.device_id)
        iface = PeerInterface(self.ctx, peer)
        self.peers[peer.id] = iface
        self._export(iface.path, iface)
        if device is not None:
            device.emit_peer_added(iface.path)

    def _remove_peer(self, peer: PeerStatus) -> None:
        iface = self.peers.pop(peer.id, None)
        if iface is None:
            return
        self._unexport(iface)
        device = self.devices.get(peer.device_id)
        if device is not None:
            device.emit_peer_removed(iface.path)

    def _export(self, path: str, iface: TableInterface) -> None:
        self._objects[path] = iface
        self.bus.export(path, iface)
        for method in ServiceInterface._get_methods(iface):
            self._signatures[(iface.name, method.name)] = method.in_signature

    def _unexport(self, iface: TableInterface) -> None:
        iface.retire()
        self._objects.pop(iface.path, None)
        self.bus.unexport(iface.path)

    # ---- reads, answered from the property tables ----------------------------------------

    def _fast_reads(self, msg: Message) -> Message | None:
        """Answer Properties.Get/GetAll and GetManagedObjects on our objects directly.

        Same answers as dbus-fast's generic handlers (which remain the fallback for anything
        else), without their per-property callbacks and a completeness scan that is quadratic
        in the number of objects: GetManagedObjects with a thousand peers stays cheap.
        """
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        member, interface = msg.member, msg.interface
        if interface == PROPERTIES_IFACE:
            iface = self._objects.get(msg.path or "")
            if iface is None or not msg.body or msg.body[0] != iface.name:
                return None
            if member == "GetAll" and msg.signature == "s":
                return Message.new_method_return(msg, "a{sv}", [iface.dbus_values()])
            if member == "Get" and msg.signature == "ss" and msg.body[1] in iface.table.props:
                return Message.new_method_return(
                    msg, "v", [iface.table.variant(msg.body[1], iface.obj)]
                )
            return None
        if interface == OBJECT_MANAGER_IFACE and member == "GetManagedObjects":
            if msg.path != ROOT or msg.signature != "":
                return None
            objects = {
                path: {iface.name: iface.dbus_values()}
                for path, iface in self._objects.items()
                if path != ROOT
            }
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [objects])
        return None

    # ---- the standard interfaces, as the contract says -----------------------------------

    def _standard(self, msg: Message) -> Message | None:
        """Introspection with arg names and annotations and ObjectManager only at ROOT;
        Peer.GetMachineId answered here (dbus-fast forwards it to the bus, whose policy
        refuses it with an error naming our pid and command line)."""
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        path, interface, member = msg.path or "", msg.interface, msg.member
        if interface == PEER_STD_IFACE and member == "GetMachineId" and msg.signature == "":
            if not self.machine_id:
                return Message.new_error(msg, Error.FAILED, "this system has no machine id")
            return Message.new_method_return(msg, "s", [self.machine_id])
        if interface == OBJECT_MANAGER_IFACE and path != ROOT:
            return Message.new_error(
                msg, Error.UNKNOWN_INTERFACE, "only the root object is an ObjectManager"
            )
        if interface == INTROSPECTABLE_IFACE and member == "Introspect" and path in self._objects:
            node = self.bus._introspect_export_path(path)
            if path != ROOT:
                node.interfaces = [i for i in node.interfaces if i.name != OBJECT_MANAGER_IFACE]
            return Message.new_method_return(msg, "s", [node.tostring()])
        return None

    # ---- polkit and malformed calls ----------------------------------------------------

    def _polkit_changed(self) -> None:
        if not self._closed:
            self.manager.emit_check_permissions()

    def _check_signature(self, msg: Message) -> Message | None:
        """A known method called with the wrong argument types gets InvalidArgs (as sd-bus
        answers), not dbus-fast's UnknownMethod, which suggests the method does not exist."""
        if msg.message_type is not MessageType.METHOD_CALL or msg.interface is None:
            return None
        expected = self._signatures.get((msg.interface, msg.member or ""))
        if expected is None or expected == msg.signature:
            return None
        if msg.interface not in self.bus._path_exports.get(msg.path, {}):
            return None  # dbus-fast answers UnknownObject / UnknownInterface itself
        error = invalid_args(f"{msg.member} takes ({expected}), not {caller_text(msg.signature)}")
        return Message.new_error(msg, error.type, error.text)


async def start_bus(engine: Engine, address: str = "system", **kwargs: Any) -> BusService:
    """Connect to ``address`` (system | session | a D-Bus address), export ``engine`` and own
    the name; raises ``stunmeshd.bus.connection.BusError`` with a one-line reason otherwise."""
    bus = await connect(address)
    service = BusService(bus, engine, **kwargs)
    try:
        await service.start()
    except BaseException:
        await service.close()
        raise
    return service
