"""A flat ``com.canonical.dbusmenu`` menu (the menu protocol of StatusNotifierItem hosts).

The menu is a list of ``Entry`` under the root item 0. Ids are kept per entry key, so an entry
keeps its id while its label changes; the layout revision goes up on every visible change and
``LayoutUpdated`` tells the host. Labels that depend on the clock (handshake ages) are brought
up to date when the host is about to show the menu (``AboutToShow``): no timers.
"""

import itertools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from dbus_fast import Variant
from dbus_fast.annotations import DBusBool, DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import (
    PropertyAccess,
    ServiceInterface,
    dbus_method,
    dbus_property,
    dbus_signal,
)

from stunmeshd.applet.view import Entry

log = logging.getLogger(__name__)

MENU_IFACE = "com.canonical.dbusmenu"
MENU_PATH = "/MenuBar"
LAYOUT = "(ia{sv}av)"  # (id, properties, children as variants of the same)

Ints = Annotated[list[int], DBusSignature("ai")]
Strings = Annotated[list[str], DBusSignature("as")]
AnyVariant = Annotated[Variant, DBusSignature("v")]
RevisionAndLayout = Annotated[list[Any], DBusSignature("u" + LAYOUT)]
GroupProperties = Annotated[list[Any], DBusSignature("a(ia{sv})")]
Events = Annotated[list[Any], DBusSignature("a(isvu)")]
UpdatesAndErrors = Annotated[list[list[int]], DBusSignature("aiai")]
RevisionAndParent = Annotated[list[int], DBusSignature("ui")]
PropertiesUpdates = Annotated[list[Any], DBusSignature("a(ia{sv})a(ia{sv})")]


def _props(entry: Entry) -> dict[str, Variant]:
    if entry.separator:
        return {"type": Variant("s", "separator")}
    return {
        "label": Variant("s", entry.label.replace("_", "__")),  # "_" marks a mnemonic
        "enabled": Variant("b", entry.target is not None and entry.enabled),
        "visible": Variant("b", True),
    }


class DBusMenu(ServiceInterface):
    """Serves ``entries()``; ``on_click(entry)`` runs when the user activates an entry."""

    def __init__(
        self, entries: Callable[[], list[Entry]], on_click: Callable[[Entry], None]
    ) -> None:
        super().__init__(MENU_IFACE)
        self._entries = entries
        self._on_click = on_click
        self._ids: dict[str, int] = {}
        self._next_id = itertools.count(1)
        self._revision = 1
        self._shown: list[tuple[int, Entry]] = []

    # ---- the model ------------------------------------------------------------------------

    def _build(self) -> list[tuple[int, Entry]]:
        items = []
        for entry in self._entries():
            if entry.key not in self._ids:
                self._ids[entry.key] = next(self._next_id)
            items.append((self._ids[entry.key], entry))
        return items

    def refresh(self) -> bool:
        """Re-read the entries; announce a new layout if anything visible changed."""
        items = self._build()
        if items == self._shown:
            return False
        self._shown = items
        self._revision += 1
        self.layout_updated(self._revision, 0)
        return True

    def _item(self, item_id: int) -> Entry | None:
        return next((e for i, e in self._shown if i == item_id), None)

    def _layout(self, depth: int) -> list[Any]:
        children = (
            [] if depth == 0 else [Variant(LAYOUT, [i, _props(e), []]) for i, e in self._shown]
        )
        return [0, {"children-display": Variant("s", "submenu")}, children]

    # ---- methods --------------------------------------------------------------------------

    @dbus_method(name="GetLayout")
    def get_layout(
        self, parent_id: DBusInt32, recursion_depth: DBusInt32, property_names: Strings
    ) -> RevisionAndLayout:
        self.refresh()
        if parent_id == 0:
            return [self._revision, self._layout(recursion_depth)]
        entry = self._item(parent_id)
        return [self._revision, [parent_id, _props(entry) if entry else {}, []]]

    @dbus_method(name="GetGroupProperties")
    def get_group_properties(self, ids: Ints, property_names: Strings) -> GroupProperties:
        out: list[Any] = []
        for item_id, entry in self._shown:
            if not ids or item_id in ids:
                props = _props(entry)
                if property_names:
                    props = {k: v for k, v in props.items() if k in property_names}
                out.append([item_id, props])
        return out

    @dbus_method(name="GetProperty")
    def get_property(self, item_id: DBusInt32, name: DBusStr) -> AnyVariant:
        entry = self._item(item_id)
        return (_props(entry) if entry else {}).get(name, Variant("s", ""))

    @dbus_method(name="Event")
    def event(
        self, item_id: DBusInt32, event_id: DBusStr, data: AnyVariant, timestamp: DBusUInt32
    ) -> None:
        if event_id != "clicked":
            return
        entry = self._item(item_id)
        if entry is not None and entry.target is not None and entry.enabled:
            self._on_click(entry)

    @dbus_method(name="EventGroup")
    def event_group(self, events: Events) -> Ints:
        errors = []
        for item_id, event_id, data, timestamp in events:
            if self._item(item_id) is None:
                errors.append(item_id)
            else:
                self.event(item_id, event_id, data, timestamp)
        return errors

    @dbus_method(name="AboutToShow")
    def about_to_show(self, item_id: DBusInt32) -> DBusBool:
        return self.refresh()

    @dbus_method(name="AboutToShowGroup")
    def about_to_show_group(self, ids: Ints) -> UpdatesAndErrors:
        return [[0] if self.refresh() else [], []]

    # ---- signals and properties -----------------------------------------------------------

    @dbus_signal(name="LayoutUpdated")
    def layout_updated(self, revision: int, parent: int) -> RevisionAndParent:
        return [revision, parent]

    @dbus_signal(name="ItemsPropertiesUpdated")
    def items_properties_updated(self) -> PropertiesUpdates:
        raise NotImplementedError  # never sent: every change is a new layout

    @dbus_property(access=PropertyAccess.READ, name="Version")
    def version(self) -> DBusUInt32:
        return 3

    @dbus_property(access=PropertyAccess.READ, name="TextDirection")
    def text_direction(self) -> DBusStr:
        return "ltr"

    @dbus_property(access=PropertyAccess.READ, name="Status")
    def status(self) -> DBusStr:
        return "normal"

    @dbus_property(access=PropertyAccess.READ, name="IconThemePath")
    def icon_theme_path(self) -> Strings:
        return []
