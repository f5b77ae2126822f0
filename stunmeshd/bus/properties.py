"""Property tables: how each D-Bus property is read from a model object, and which model
fields it follows.

Getters must never raise: one raising getter breaks ``GetAll`` and ``GetManagedObjects`` for
every client. So each value is checked against its signature here, and a value that does not
fit (a bug upstream) is logged once and replaced by the property's neutral default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from dbus_fast import Variant
from dbus_fast import introspection as intr
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property

from stunmeshd.bus.connection import ValuesProvider
from stunmeshd.bus.members import check_members, declared_methods, declared_signals
from stunmeshd.bus.names import PROPERTIES_IFACE

if TYPE_CHECKING:
    from stunmeshd.bus.context import BusContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prop:
    name: str  # D-Bus property name
    signature: str
    read: Callable[[Any], Any]  # model object -> plain Python value
    fields: tuple[str, ...]  # model fields whose change changes this property
    default: Any


class PropertyTable:
    """The properties of one D-Bus interface over one kind of model object."""

    def __init__(self, props: Iterable[Prop]) -> None:
        self.props: dict[str, Prop] = {p.name: p for p in props}
        self._by_field: dict[str, list[Prop]] = {}
        for prop in self.props.values():
            for name in prop.fields:
                self._by_field.setdefault(name, []).append(prop)
        self._warned: set[str] = set()

    def variant(self, name: str, obj: Any) -> Variant:
        prop = self.props[name]
        try:
            return Variant(prop.signature, prop.read(obj))
        except Exception as exc:
            if name not in self._warned:
                self._warned.add(name)
                log.error("property %s unreadable, sending its default: %r", name, exc)
            return Variant(prop.signature, prop.default)

    def value(self, name: str, obj: Any) -> Any:
        return self.variant(name, obj).value

    def variants(self, obj: Any) -> dict[str, Variant]:
        return {name: self.variant(name, obj) for name in self.props}

    def changed(self, obj: Any, fields: Iterable[str]) -> dict[str, Variant]:
        """The properties that follow ``fields``, with their current values."""
        names: dict[str, None] = {}
        for field in fields:
            for prop in self._by_field.get(field, ()):
                names[prop.name] = None
        return {name: self.variant(name, obj) for name in names}


def _read_only(prop: Prop) -> Any:
    """The dbus-fast property of ``prop``: a getter reading the table, typed by its signature."""

    def getter(self: TableInterface) -> Any:
        return self.prop(prop.name)

    # dbus-fast takes a return annotation that looks like a signature as the signature
    getter.__annotations__ = {"return": prop.signature}
    getter.__name__ = getter.__qualname__ = f"property_{prop.name}"
    return dbus_property(access=PropertyAccess.READ, name=prop.name)(getter)


class TableInterface(ValuesProvider, ServiceInterface):
    """An exported interface whose properties come from ``table`` over one model object.

    Each row of ``table`` is exported as a read-only property: adding a property is adding a
    row. Each method is one ``@bus_method`` and each signal one ``@bus_signal`` declaration
    (bus/members.py), checked when the class is created. dbus/*.xml repeats the result, and
    tests/bus/test_units.py compares it with the code. Signals are sent straight from
    ``path`` (see ``StunMeshBus.emit``).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_members(cls)
        cls.arg_names = {
            **{m: spec.out for m, spec in declared_methods(cls).items()},
            **{m: spec.args for m, spec in declared_signals(cls).items()},
        }
        cls.signal_signatures = {m: s.signature for m, s in declared_signals(cls).items()}
        table = cls.__dict__.get("table")
        if table is None:
            return
        for prop in table.props.values():
            attr = f"property_{prop.name}"
            if attr in cls.__dict__:
                raise TypeError(f"{cls.__name__}.{attr}: properties come from the table")
            setattr(cls, attr, _read_only(prop))

    interface: ClassVar[str]  # the D-Bus interface name
    table: ClassVar[PropertyTable]
    # names of method out-args and signal args by member, from the declarations: dbus-fast
    # leaves them unnamed, and clients (gdbus, code generators) show what introspection says
    arg_names: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    signal_signatures: ClassVar[Mapping[str, str]] = {}
    annotations: ClassVar[Mapping[str, str]] = {
        "org.freedesktop.DBus.Property.EmitsChangedSignal": "true"
    }

    def __init__(self, ctx: BusContext, obj: Any, path: str) -> None:
        super().__init__(self.interface)
        self.ctx = ctx
        self.obj = obj
        self.path = path
        self._deferred: dict[str, None] = {}
        self.retired = False  # unexported: after InterfacesRemoved, no signal may follow

    def polkit_details(self) -> dict[str, str]:
        """What polkit (and its rules) learn about the object a guarded method acts on."""
        return {}

    def dbus_values(self) -> dict[str, Variant]:
        return self.table.variants(self.obj)

    def introspect(self) -> intr.Interface:
        """dbus-fast's introspection plus what it cannot know: arg names and annotations."""
        iface = super().introspect()
        iface.annotations = dict(self.annotations)
        for method in iface.methods:
            self._name_args(method.name, method.out_args)
        for signal in iface.signals:
            self._name_args(signal.name, signal.args)
        return iface

    def _name_args(self, member: str, args: list[intr.Arg]) -> None:
        names = self.arg_names.get(member, ())
        for arg, name in zip(args, names, strict=False):
            arg.name = name

    def prop(self, name: str) -> Any:
        return self.table.value(name, self.obj)

    def emit_changed(self, fields: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        """One PropertiesChanged for the properties following ``fields`` plus ``names``."""
        changed = self.table.changed(self.obj, fields)
        for name in names:
            changed[name] = self.table.variant(name, self.obj)
        if changed:
            self.signal(PROPERTIES_IFACE, "PropertiesChanged", "sa{sv}as", [self.name, changed, []])

    def defer_changed(self, *names: str) -> None:
        """Announce ``names`` once at the end of this loop turn: adding a thousand peers in
        one step must send one ``Peers`` change, not a thousand ever-longer ones."""
        if not self._deferred:
            asyncio.get_running_loop().call_soon(self._flush_deferred)
        self._deferred.update(dict.fromkeys(names))

    def _flush_deferred(self) -> None:
        names, self._deferred = list(self._deferred), {}
        if names:
            self.emit_changed(names=names)

    def retire(self) -> None:
        """The object leaves the bus: drop pending changes, send nothing from now on."""
        self.retired = True
        self._deferred.clear()

    def send(self, member: str, *args: Any) -> None:
        """Emit this interface's ``@bus_signal`` ``member`` with ``args``."""
        self.signal(self.interface, member, self.signal_signatures[member], list(args))

    def signal(self, interface: str, member: str, signature: str, body: list[Any]) -> None:
        if not self.retired:
            self.ctx.bus.emit(self.path, interface, member, signature, body)


# ---- converters: model value -> exact D-Bus value ----------------------------------------


def text(value: Any) -> str:
    return "" if value is None else str(value)


def texts(values: Any) -> list[str]:
    return [str(v) for v in values or ()]


def number(value: Any) -> int:
    """Enums, bools and ints to int (IntEnum states, µs timestamps, counters)."""
    return int(value or 0)
