"""The ``org.kde.StatusNotifierItem`` on the session bus, and its registration with the watcher.

The item lives at ``/StatusNotifierItem`` under a name of the spec's form
(``org.kde.StatusNotifierItem-PID-1``); the menu is the ``com.canonical.dbusmenu`` object at
``/MenuBar``. The watcher (the panel) may start after the applet or restart: its
``NameOwnerChanged`` triggers a new registration.
"""

import asyncio
import logging
import os
from typing import Annotated, Any

from dbus_fast import Message, MessageType, NameFlag
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusInt32, DBusObjectPath, DBusSignature, DBusStr
from dbus_fast.service import (
    PropertyAccess,
    ServiceInterface,
    dbus_method,
    dbus_property,
    dbus_signal,
)

from stunmeshd.applet import icons
from stunmeshd.applet.dbusmenu import MENU_PATH
from stunmeshd.applet.view import Overall
from stunmeshd.bus.names import DBUS_NAME, DBUS_PATH

log = logging.getLogger(__name__)

ITEM_IFACE = "org.kde.StatusNotifierItem"
ITEM_PATH = "/StatusNotifierItem"
WATCHER_NAME = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
WATCHER_IFACE = "org.kde.StatusNotifierWatcher"
ITEM_ID = "stunmesh-applet"

Pixmaps = Annotated[list[Any], DBusSignature("a(iiay)")]
ToolTip = Annotated[list[Any], DBusSignature("(sa(iiay)ss)")]


class StatusNotifierItem(ServiceInterface):
    """The tray icon: its state, tooltip and menu; ``update`` changes them and tells the host."""

    def __init__(self) -> None:
        super().__init__(ITEM_IFACE)
        self.state = Overall.OFFLINE
        self.tip = ("stunmeshd", "")

    def update(self, state: Overall, tip: tuple[str, str]) -> None:
        if state != self.state:
            old_status = self._status()
            self.state = state
            self.new_icon()
            self.new_attention_icon()
            if self._status() != old_status:
                self.new_status(self._status())
        if tip != self.tip:
            self.tip = tip
            self.new_tool_tip()

    def _status(self) -> str:
        return "NeedsAttention" if self.state is Overall.FAILED else "Active"

    # ---- properties -----------------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ, name="Category")
    def category(self) -> DBusStr:
        return "SystemServices"

    @dbus_property(access=PropertyAccess.READ, name="Id")
    def id_(self) -> DBusStr:
        return ITEM_ID

    @dbus_property(access=PropertyAccess.READ, name="Title")
    def title(self) -> DBusStr:
        return "stunmeshd"

    @dbus_property(access=PropertyAccess.READ, name="Status")
    def status(self) -> DBusStr:
        return self._status()

    @dbus_property(access=PropertyAccess.READ, name="WindowId")
    def window_id(self) -> DBusInt32:
        return 0

    @dbus_property(access=PropertyAccess.READ, name="IconName")
    def icon_name(self) -> DBusStr:
        return icons.icon_name(self.state)

    @dbus_property(access=PropertyAccess.READ, name="IconPixmap")
    def icon_pixmap(self) -> Pixmaps:
        return [list(p) for p in icons.pixmaps(self.state)]

    @dbus_property(access=PropertyAccess.READ, name="AttentionIconName")
    def attention_icon_name(self) -> DBusStr:
        return icons.icon_name(Overall.FAILED)

    @dbus_property(access=PropertyAccess.READ, name="AttentionIconPixmap")
    def attention_icon_pixmap(self) -> Pixmaps:
        return [list(p) for p in icons.pixmaps(Overall.FAILED)]

    @dbus_property(access=PropertyAccess.READ, name="OverlayIconName")
    def overlay_icon_name(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="OverlayIconPixmap")
    def overlay_icon_pixmap(self) -> Pixmaps:
        return []

    @dbus_property(access=PropertyAccess.READ, name="AttentionMovieName")
    def attention_movie_name(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="IconThemePath")
    def icon_theme_path(self) -> DBusStr:
        return icons.theme_path()

    @dbus_property(access=PropertyAccess.READ, name="ToolTip")
    def tool_tip(self) -> ToolTip:
        return [icons.icon_name(self.state), [], self.tip[0], self.tip[1]]

    @dbus_property(access=PropertyAccess.READ, name="ItemIsMenu")
    def item_is_menu(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ, name="Menu")
    def menu(self) -> DBusObjectPath:
        return MENU_PATH

    # ---- methods: every click opens the menu (ItemIsMenu); nothing else to do -----------

    @dbus_method(name="ContextMenu")
    def context_menu(self, x: DBusInt32, y: DBusInt32) -> None:
        pass

    @dbus_method(name="Activate")
    def activate(self, x: DBusInt32, y: DBusInt32) -> None:
        pass

    @dbus_method(name="SecondaryActivate")
    def secondary_activate(self, x: DBusInt32, y: DBusInt32) -> None:
        pass

    @dbus_method(name="Scroll")
    def scroll(self, delta: DBusInt32, orientation: DBusStr) -> None:
        pass

    # ---- signals --------------------------------------------------------------------------

    @dbus_signal(name="NewIcon")
    def new_icon(self) -> None:
        pass

    @dbus_signal(name="NewAttentionIcon")
    def new_attention_icon(self) -> None:
        pass

    @dbus_signal(name="NewToolTip")
    def new_tool_tip(self) -> None:
        pass

    @dbus_signal(name="NewStatus")
    def new_status(self, status: str) -> DBusStr:
        return status


class Registration:
    """Owns the item's bus name and (re-)registers it with whichever watcher runs."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.name = f"org.kde.StatusNotifierItem-{os.getpid()}-1"
        self._tasks: set[asyncio.Task[bool]] = set()

    async def start(self) -> None:
        await self.bus.request_name(self.name, NameFlag.DO_NOT_QUEUE)
        rule = f"type='signal',sender='{DBUS_NAME}',member='NameOwnerChanged',arg0='{WATCHER_NAME}'"
        await self.bus.call(
            Message(
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_NAME,
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        self.bus.add_message_handler(self._on_message)
        await self.register()

    def _on_message(self, msg: Message) -> None:
        if (
            msg.message_type is MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == DBUS_NAME
            and msg.body[:1] == [WATCHER_NAME]
            and msg.body[2]
        ):
            task = asyncio.get_running_loop().create_task(self.register())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def register(self) -> bool:
        """Register with the watcher; False when there is none (yet)."""
        reply = await self.bus.call(
            Message(
                destination=WATCHER_NAME,
                path=WATCHER_PATH,
                interface=WATCHER_IFACE,
                member="RegisterStatusNotifierItem",
                signature="s",
                body=[self.name],
            )
        )
        if reply is None or reply.message_type is MessageType.ERROR:
            log.info("no StatusNotifierWatcher yet; waiting for one to appear")
            return False
        log.info("registered with the StatusNotifierWatcher as %s", self.name)
        return True
