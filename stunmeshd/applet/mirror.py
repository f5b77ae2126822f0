"""The daemon's object tree, mirrored from the system bus by its signals alone.

One ``GetManagedObjects`` when the daemon (re)appears, then ``InterfacesAdded``/``Removed`` and
``PropertiesChanged``; ``NameOwnerChanged`` says when it starts, stops or is not installed at
all. Nothing is polled: an idle daemon costs the applet nothing.

Signals that arrive while the snapshot is loading are kept and replayed only when the daemon
sent them after the snapshot (its message serials tell), so no change is lost or undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType, unpack_variants
from dbus_fast.aio import MessageBus

from stunmeshd.bus.names import (
    BUS_NAME,
    DBUS_NAME,
    DBUS_PATH,
    DEVICE_IFACE,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
)

log = logging.getLogger(__name__)

CALL_TIMEOUT = 25.0  # s, the usual D-Bus client timeout

MATCH_RULES = (
    f"type='signal',sender='{BUS_NAME}'",
    f"type='signal',sender='{DBUS_NAME}',member='NameOwnerChanged',arg0='{BUS_NAME}'",
)


@dataclass
class Tree:
    """What the daemon shows: its manager properties, devices and peers by object path."""

    running: bool = False
    manager: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)  # polkit action -> yes/auth/no

    def add(self, path: str, interfaces: dict[str, dict[str, Any]]) -> None:
        if DEVICE_IFACE in interfaces:
            self.devices[path] = dict(interfaces[DEVICE_IFACE])
        if PEER_IFACE in interfaces:
            self.peers[path] = dict(interfaces[PEER_IFACE])

    def remove(self, path: str, interfaces: list[str]) -> None:
        if DEVICE_IFACE in interfaces:
            self.devices.pop(path, None)
        if PEER_IFACE in interfaces:
            self.peers.pop(path, None)

    def update(self, path: str, interface: str, changed: dict[str, Any]) -> bool:
        """Apply a PropertiesChanged; False for an object we do not know."""
        if interface == MANAGER_IFACE and path == ROOT:
            target = self.manager
        elif interface == DEVICE_IFACE:
            target = self.devices.get(path)
        elif interface == PEER_IFACE:
            target = self.peers.get(path)
        else:
            return False
        if target is None:
            return False
        target.update(changed)
        return True


class DaemonMirror:
    """Keeps ``tree`` equal to the daemon's; calls ``on_change`` after every change."""

    def __init__(self, bus: MessageBus, on_change: Callable[[Tree], None]) -> None:
        self.bus = bus
        self.on_change = on_change
        self.tree = Tree()
        self._owner = ""  # the daemon's unique name, "" when it is not on the bus
        self._pending: list[Message] | None = None  # signals seen while a snapshot loads
        self._load_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for rule in MATCH_RULES:
            await self._call(DBUS_NAME, DBUS_PATH, DBUS_NAME, "AddMatch", "s", [rule])
        self.bus.add_message_handler(self._on_message)
        try:
            owner = (
                await self._call(DBUS_NAME, DBUS_PATH, DBUS_NAME, "GetNameOwner", "s", [BUS_NAME])
            )[0]
        except LookupError:
            owner = ""  # not running, or not installed yet: NameOwnerChanged will tell
        self._follow(owner)

    @property
    def loading(self) -> bool:
        """A snapshot of the daemon is on its way."""
        return self._pending is not None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bus.remove_message_handler(self._on_message)
        if self._load_task is not None:
            self._load_task.cancel()

    # ---- signals --------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL:
            return
        try:
            if msg.member == "NameOwnerChanged" and msg.sender == DBUS_NAME:
                if msg.body and msg.body[0] == BUS_NAME:
                    self._follow(str(msg.body[2]))
                return
            if not self._owner or msg.sender != self._owner:
                return
            if self._pending is not None:
                self._pending.append(msg)
                return
            if msg.member == "CheckPermissions" and msg.interface == MANAGER_IFACE:
                task = asyncio.get_running_loop().create_task(self._recheck(msg.sender or ""))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            if self._apply(msg):
                self.on_change(self.tree)
        except Exception:  # a malformed signal must not end the applet
            log.exception("ignoring a signal the applet could not read: %s", msg.member)

    def _apply(self, msg: Message) -> bool:
        body = unpack_variants(list(msg.body))
        if msg.member == "PropertiesChanged" and msg.interface == PROPERTIES_IFACE:
            return self.tree.update(msg.path or "", str(body[0]), dict(body[1]))
        if msg.path != ROOT or msg.interface != OBJECT_MANAGER_IFACE:
            return False
        if msg.member == "InterfacesAdded":
            self.tree.add(str(body[0]), dict(body[1]))
            return True
        if msg.member == "InterfacesRemoved":
            self.tree.remove(str(body[0]), list(body[1]))
            return True
        return False

    # ---- the daemon coming and going ------------------------------------------------------

    def _follow(self, owner: str) -> None:
        if owner == self._owner:
            return
        self._owner = owner
        if self._load_task is not None:
            self._load_task.cancel()
            self._load_task = None
        self._pending = None
        if owner:
            self._pending = []
            self._load_task = asyncio.create_task(self._load(owner))
        else:
            self.tree = Tree()
            self.on_change(self.tree)

    async def _load(self, owner: str) -> None:
        """One snapshot of the new daemon, then the signals it sent after it."""
        try:
            manager = await self._call_raw(
                owner, ROOT, PROPERTIES_IFACE, "GetAll", "s", [MANAGER_IFACE]
            )
            objects = await self._call_raw(owner, ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects")
            permissions = await self._permissions(owner)
            if self._owner != owner:
                return
            tree = Tree(running=True, manager=dict(unpack_variants(manager.body[0])))
            for path, interfaces in unpack_variants(objects.body[0]).items():
                tree.add(str(path), interfaces)
            tree.permissions = permissions
        except Exception as exc:
            # gone again (NameOwnerChanged follows), not answering, or an answer we cannot
            # read: show it as not running rather than half a tree
            log.info("stunmeshd did not answer (%s)", exc)
            if self._owner == owner:
                self._pending = None
                self.tree = Tree()
                self.on_change(self.tree)
            return
        self.tree = tree
        pending, self._pending = self._pending or [], None
        for msg in pending:  # the daemon numbers its messages: keep what came after each reply
            is_manager = msg.path == ROOT and msg.member == "PropertiesChanged"
            if msg.serial > (manager.serial if is_manager else objects.serial):
                self._apply(msg)
        self.on_change(self.tree)

    async def _permissions(self, owner: str) -> dict[str, str]:
        """What polkit lets this user do ({} when the daemon cannot say: let polkit decide)."""
        try:
            reply = await self._call_raw(owner, ROOT, MANAGER_IFACE, "GetPermissions")
        except (LookupError, TimeoutError):
            return {}
        return {str(k): str(v) for k, v in reply.body[0].items()}

    async def _recheck(self, owner: str) -> None:
        """polkit's rules or the user's session changed (CheckPermissions)."""
        permissions = await self._permissions(owner)
        if self._owner == owner and self.tree.running and permissions != self.tree.permissions:
            self.tree.permissions = permissions
            self.on_change(self.tree)

    # ---- calls ----------------------------------------------------------------------------

    async def _call_raw(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> Message:
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        reply = await asyncio.wait_for(self.bus.call(msg), CALL_TIMEOUT)
        if reply is None or reply.message_type is MessageType.ERROR:
            name = reply.error_name if reply is not None else "no reply"
            raise LookupError(f"{member}: {name}")
        return reply

    async def _call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        reply = await self._call_raw(destination, path, interface, member, signature, body)
        return list(reply.body)
