"""D-Bus signatures as ``typing.Annotated`` aliases, so members carry real type hints.

Aliases start with a capital letter on purpose: dbus-fast reads an all-lowercase annotation
string as a raw signature.
"""

from __future__ import annotations

from typing import Annotated

from dbus_fast import Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusInt32,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
    DBusUInt64,
)

Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ObjectPaths = Annotated[list[str], DBusSignature("ao")]
Strings = Annotated[list[str], DBusSignature("as")]
StringMap = Annotated[dict[str, str], DBusSignature("a{ss}")]
SuccessAndError = Annotated[tuple[bool, str], DBusSignature("bs")]

__all__ = [
    "DBusBool",
    "DBusInt32",
    "DBusObjectPath",
    "DBusStr",
    "DBusUInt16",
    "DBusUInt32",
    "DBusUInt64",
    "ObjectPaths",
    "Options",
    "StringMap",
    "Strings",
    "SuccessAndError",
]
