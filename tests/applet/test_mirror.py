"""The mirror's one ordering rule, on a real bus: a change the daemon sends right after its
snapshot reply is kept, one it sent before the reply is not applied over the snapshot.

A stand-in daemon answers GetAll/GetManagedObjects by hand so the test decides exactly which
signal goes before and which after the reply, in one write: the mirror reads both at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from stunmeshd.applet.mirror import DaemonMirror, Tree
from stunmeshd.bus.names import (
    BUS_NAME,
    DEVICE_IFACE,
    MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    device_path,
    peer_path,
)
from stunmeshd.lab.desktop import Desktop
from stunmeshd.model import DeviceState, ManagerState, PeerState
from tests.prereq import require_tools

DEV, PEER = device_path(1), peer_path(1)


def changed(path: str, iface: str, **props: Any) -> Message:
    return Message.new_signal(
        path,
        PROPERTIES_IFACE,
        "PropertiesChanged",
        "sa{sv}as",
        [iface, {k: Variant("u", v) for k, v in props.items()}, []],
    )


class HandMadeDaemon:
    """Owns BUS_NAME; its snapshot says the peer is APPLIED, with signals around the reply."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.before: list[Message] = []
        self.after: list[Message] = []

    def on_message(self, msg: Message) -> bool | None:
        if msg.message_type is not MessageType.METHOD_CALL or msg.path != ROOT:
            return None
        if msg.member == "GetAll":
            body = {"State": Variant("u", ManagerState.RUNNING), "Devices": Variant("ao", [DEV])}
            self.bus.send(Message.new_method_return(msg, "a{sv}", [body]))
        elif msg.member == "GetManagedObjects":
            objects = {
                DEV: {
                    DEVICE_IFACE: {
                        "Interface": Variant("s", "wg0"),
                        "State": Variant("u", DeviceState.READY),
                    }
                },
                PEER: {
                    PEER_IFACE: {
                        "Device": Variant("o", DEV),
                        "Name": Variant("s", "hostB"),
                        "State": Variant("u", PeerState.APPLIED),
                    }
                },
            }
            for sig in self.before:
                self.bus.send(sig)
            self.bus.send(Message.new_method_return(msg, "a{oa{sa{sv}}}", [objects]))
            for sig in self.after:
                self.bus.send(sig)
        else:
            self.bus.send(Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", ""))
        return True


async def test_changes_right_after_the_snapshot_are_kept() -> None:
    require_tools("dbus-daemon")
    async with Desktop() as desktop:
        daemon_bus = await desktop.session.connect()
        client_bus = await desktop.session.connect()
        try:
            daemon = HandMadeDaemon(daemon_bus)
            # sent before the snapshot: older than it (the snapshot says APPLIED)
            daemon.before = [changed(PEER, PEER_IFACE, State=PeerState.RESOLVED)]
            # sent after it: newer, must win although it arrives together with the reply
            daemon.after = [
                changed(DEV, DEVICE_IFACE, State=DeviceState.FAILED),
                changed(ROOT, MANAGER_IFACE, State=ManagerState.DEGRADED),
            ]
            daemon_bus.add_message_handler(daemon.on_message)

            trees: list[Tree] = []
            seen = asyncio.Event()

            def on_change(tree: Tree) -> None:
                trees.append(tree)
                seen.set()

            async def until(predicate: Callable[[Tree], bool]) -> Tree:
                async with asyncio.timeout(10):
                    while not (trees and predicate(trees[-1])):
                        seen.clear()
                        await seen.wait()
                return trees[-1]

            mirror = DaemonMirror(client_bus, on_change)
            await mirror.start()
            assert not mirror.tree.running  # nobody owns the name yet
            await daemon_bus.request_name(BUS_NAME)
            tree = await until(lambda t: t.running)
            assert tree.peers[PEER]["State"] == PeerState.APPLIED
            assert tree.devices[DEV] == {"Interface": "wg0", "State": DeviceState.FAILED}
            assert tree.manager["State"] == ManagerState.DEGRADED

            # later signals apply directly; the daemon leaving empties the tree
            daemon_bus.send(changed(PEER, PEER_IFACE, State=PeerState.CONNECTED))
            await until(lambda t: t.peers[PEER]["State"] == PeerState.CONNECTED)
            daemon_bus.disconnect()
            tree = await until(lambda t: not t.running)
            assert tree.peers == {} and tree.devices == {}
            mirror.close()
        finally:
            client_bus.disconnect()
