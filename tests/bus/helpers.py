"""Small client-side helpers for the bus tests: calls, signal collection, CLI clients."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, unpack_variants
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node

from stunmeshd.bus.names import (
    BUS_NAME,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
)
from tests.bus.sysbus import PYTHON, REPO, TestUser


@dataclass
class Reply:
    ok: bool
    body: list[Any]
    error: str = ""  # error name
    text: str = ""


async def call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
    *,
    interactive: bool = False,
    destination: str = BUS_NAME,
    timeout: float = 30.0,
) -> Reply:
    msg = Message(
        destination=destination,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=list(body),
        flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION if interactive else MessageFlag.NONE,
    )
    reply = await asyncio.wait_for(bus.call(msg), timeout)
    assert reply is not None
    if reply.message_type is MessageType.ERROR:
        text = reply.body[0] if reply.body else ""
        return Reply(False, list(reply.body), reply.error_name or "", str(text))
    return Reply(True, list(reply.body))


async def managed_objects(bus: MessageBus) -> dict[str, dict[str, dict[str, Any]]]:
    reply = await call(bus, ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects")
    assert reply.ok, reply
    return unpack_variants(reply.body[0])


async def get_all(bus: MessageBus, path: str, interface: str) -> dict[str, Any]:
    reply = await call(bus, path, PROPERTIES_IFACE, "GetAll", "s", [interface])
    assert reply.ok, reply
    return unpack_variants(reply.body[0])


async def refresh(
    bus: MessageBus, path: str = ROOT, interface: str = MANAGER_IFACE, **options: Any
) -> Reply:
    from dbus_fast import Variant

    opts = {k: Variant("b", v) if isinstance(v, bool) else v for k, v in options.items()}
    return await call(bus, path, interface, "Refresh", "a{sv}", [opts])


@dataclass
class Signals:
    """Every signal the daemon sends, in order, as (path, interface, member, unpacked body)."""

    bus: MessageBus
    seen: list[tuple[str, str, str, list[Any]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, rule: str = f"type='signal',sender='{BUS_NAME}'") -> Signals:
        reply = await call(
            self.bus,
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            "s",
            [rule],
            destination="org.freedesktop.DBus",
        )
        assert reply.ok, reply
        self.bus.add_message_handler(self._on_message)
        return self

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.sender != "org.freedesktop.DBus":
            self.seen.append(
                (msg.path or "", msg.interface or "", msg.member or "", unpack_variants(msg.body))
            )
            self._changed.set()

    def members(self, member: str, path: str | None = None) -> list[list[Any]]:
        return [b for p, _i, m, b in self.seen if m == member and (path is None or p == path)]

    async def wait_for(
        self,
        predicate: Callable[[list[tuple[str, str, str, list[Any]]]], bool],
        timeout: float = 10.0,
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.seen):
                self._changed.clear()
                await self._changed.wait()

    def clear(self) -> None:
        self.seen.clear()


async def run(
    *argv: str, user: TestUser | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a command (as ``user`` when given); never raises on a non-zero exit."""
    if user is not None:
        return await user.run(*argv, timeout=timeout)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out.decode(), err.decode())


def busctl(address: str, *args: str) -> list[str]:
    return ["busctl", f"--address={address}", *args]


def gdbus(address: str, *args: str) -> list[str]:
    return ["gdbus", args[0], "--address", address, *args[1:]]


def ctl(address: str, *args: str) -> list[str]:
    return [str(PYTHON), "-m", "stunmeshd.ctl", "--bus", address, *args]


async def walk_everything(bus: MessageBus) -> str:
    """Introspection of every node, every property read one by one, GetManagedObjects."""
    texts: list[str] = []

    async def visit(path: str) -> None:
        reply = await call(bus, path, "org.freedesktop.DBus.Introspectable", "Introspect")
        xml = reply.body[0]
        texts.append(xml)
        node = Node.parse(xml)
        for iface in node.interfaces:
            for prop in iface.properties:
                got = await call(bus, path, PROPERTIES_IFACE, "Get", "ss", [iface.name, prop.name])
                texts.append(repr(got.body))
        for child in node.nodes:
            await visit(f"{path.rstrip('/')}/{child.name}")

    await visit("/")
    texts.append(repr(await managed_objects(bus)))
    texts.append(repr(await get_all(bus, ROOT, MANAGER_IFACE)))
    return "\n".join(texts)


__all__ = [
    "REPO",
    "Reply",
    "Signals",
    "busctl",
    "call",
    "ctl",
    "gdbus",
    "get_all",
    "managed_objects",
    "refresh",
    "run",
    "walk_everything",
]
