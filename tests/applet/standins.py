"""Stand-ins for the desktop's side of the session bus, and a client that reads the tray item
the way a StatusNotifierItem host does.

- ``Watcher``: ``org.kde.StatusNotifierWatcher`` (the panel's registry of tray items).
- ``NotificationServer``: ``org.freedesktop.Notifications``; keeps every ``Notify``.
- ``Tray``: the item's properties, its dbusmenu layout, clicks through ``Event``, and the
  item's and menu's signals, in order.
"""

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from dbus_fast import Message, MessageType, NameFlag, Variant, unpack_variants
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"
ITEM_IFACE = "org.kde.StatusNotifierItem"
MENU_IFACE = "com.canonical.dbusmenu"

Strings = Annotated[list[str], DBusSignature("as")]
Hints = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ServerInfo = Annotated[list[str], DBusSignature("ssss")]


class Watcher(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(WATCHER)
        self.items: list[str] = []
        self.changed = asyncio.Event()

    @dbus_method(name="RegisterStatusNotifierItem")
    def register_item(self, service: DBusStr) -> None:
        self.items.append(service)
        self.changed.set()

    @dbus_method(name="RegisterStatusNotifierHost")
    def register_host(self, service: DBusStr) -> None:
        pass

    @dbus_property(access=PropertyAccess.READ, name="RegisteredStatusNotifierItems")
    def registered(self) -> Strings:
        return list(self.items)

    @dbus_property(access=PropertyAccess.READ, name="IsStatusNotifierHostRegistered")
    def host_registered(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ, name="ProtocolVersion")
    def protocol_version(self) -> DBusInt32:
        return 0

    async def wait_items(self, count: int, timeout: float = 20.0) -> str:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.items[-1]


@dataclass
class Notified:
    summary: str
    body: str
    replaces: int
    icon: str
    hints: dict[str, Any]


class NotificationServer(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(NOTIFICATIONS)
        self.seen: list[Notified] = []
        self._ids = itertools.count(1)
        self.changed = asyncio.Event()

    @dbus_method(name="Notify")
    def notify(
        self,
        app_name: DBusStr,
        replaces_id: DBusUInt32,
        app_icon: DBusStr,
        summary: DBusStr,
        body: DBusStr,
        actions: Strings,
        hints: Hints,
        expire_timeout: DBusInt32,
    ) -> DBusUInt32:
        self.seen.append(Notified(summary, body, replaces_id, app_icon, unpack_variants(hints)))
        self.changed.set()
        return replaces_id or next(self._ids)

    @dbus_method(name="GetCapabilities")
    def get_capabilities(self) -> Strings:
        return ["body"]

    @dbus_method(name="GetServerInformation")
    def get_server_information(self) -> ServerInfo:
        return ["stand-in", "stunmeshd tests", "1", "1.2"]

    def summaries(self) -> list[str]:
        return [n.summary for n in self.seen]

    async def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.summaries()):
                self.changed.clear()
                await self.changed.wait()


async def serve(bus: MessageBus, name: str, path: str, iface: ServiceInterface) -> None:
    bus.export(path, iface)
    await bus.request_name(name, NameFlag.DO_NOT_QUEUE)


# ---- the host's view of the item -------------------------------------------------------------


@dataclass
class Tray:
    """Reads the item ``service`` on ``bus`` like a tray host; records its signals."""

    bus: MessageBus
    service: str
    signals: list[tuple[str, list[Any]]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> "Tray":
        await self._call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            "s",
            [f"type='signal',sender='{self.service}'"],
        )
        self.bus.add_message_handler(self._on_message)
        return self

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.interface in (ITEM_IFACE, MENU_IFACE):
            self.signals.append((msg.member or "", list(msg.body)))
            self._changed.set()

    async def _call(
        self, dest: str, path: str, iface: str, member: str, sig: str = "", body: Any = ()
    ) -> list[Any]:
        reply = await asyncio.wait_for(
            self.bus.call(
                Message(
                    destination=dest,
                    path=path,
                    interface=iface,
                    member=member,
                    signature=sig,
                    body=list(body),
                )
            ),
            30,
        )
        assert reply is not None
        assert reply.message_type is MessageType.METHOD_RETURN, (reply.error_name, reply.body)
        return list(reply.body)

    async def properties(self) -> dict[str, Any]:
        body = await self._call(
            self.service,
            "/StatusNotifierItem",
            "org.freedesktop.DBus.Properties",
            "GetAll",
            "s",
            [ITEM_IFACE],
        )
        return unpack_variants(body[0])

    async def menu_path(self) -> str:
        return str((await self.properties())["Menu"])

    async def layout(self) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
        """(revision, [(id, properties)]) of the menu's entries, as GetLayout gives them."""
        body = await self._call(
            self.service, await self.menu_path(), MENU_IFACE, "GetLayout", "iias", [0, -1, []]
        )
        revision, (root_id, _props, children) = unpack_variants(body)
        assert root_id == 0
        return revision, [(c[0], c[1]) for c in children]

    async def labels(self) -> list[str]:
        _rev, items = await self.layout()
        return [p.get("label", "---" if p.get("type") == "separator" else "") for _i, p in items]

    async def click(self, label: str) -> None:
        """Activate the entry whose label (stripped) is ``label``, as a host does."""
        _rev, items = await self.layout()
        matches = [i for i, p in items if str(p.get("label", "")).strip() == label]
        assert matches, f"no entry {label!r} in {await self.labels()}"
        await self._call(
            self.service,
            await self.menu_path(),
            MENU_IFACE,
            "Event",
            "isvu",
            [matches[0], "clicked", Variant("s", ""), 0],
        )

    async def wait_until(
        self, predicate: Callable[[dict[str, Any], list[str]], bool], timeout: float = 30.0
    ) -> tuple[dict[str, Any], list[str]]:
        """Re-read properties and menu on every signal of the item until ``predicate`` holds."""
        props: dict[str, Any] = {}
        labels: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    props, labels = await self.properties(), await self.labels()
                    if predicate(props, labels):
                        return props, labels
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not reached: {props.get('IconName')} {labels}") from None

    def statuses(self) -> list[str]:
        return [str(b[0]) for m, b in self.signals if m == "NewStatus"]


def tooltip_text(props: dict[str, Any]) -> str:
    return str(props["ToolTip"][3])


def has(labels: list[str], *parts: str) -> bool:
    """Some entry contains every one of ``parts``."""
    return any(all(p in label for p in parts) for label in labels)


__all__ = [
    "DBusBool",
    "NotificationServer",
    "Notified",
    "Tray",
    "Watcher",
    "has",
    "serve",
    "tooltip_text",
]
