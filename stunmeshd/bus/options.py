"""The ``a{sv}`` options argument of action methods: known keys, exact types, or InvalidArgs.

NetworkManager-style options let v2 add keys without new signatures; refusing unknown keys and
wrong types now is what keeps that door open (a typo must not be silently ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbus_fast import Variant

from stunmeshd.bus.bounded import caller_text
from stunmeshd.bus.errors import invalid_args

# option name -> D-Bus signature of its value
REFRESH_OPTIONS: Mapping[str, str] = {"wait": "b"}
NO_OPTIONS: Mapping[str, str] = {}


def parse_options(options: Any, spec: Mapping[str, str]) -> dict[str, Any]:
    """Unwrap ``options`` against ``spec``; raise InvalidArgs naming the offending key."""
    if not isinstance(options, dict):
        raise invalid_args("options must be a dictionary a{sv}")
    parsed: dict[str, Any] = {}
    for key, value in options.items():
        if key not in spec:
            known = ", ".join(sorted(spec)) or "none"
            raise invalid_args(f"unknown option {caller_text(key)} (known options: {known})")
        signature = value.signature if isinstance(value, Variant) else ""
        if signature != spec[key]:
            raise invalid_args(
                f'option {caller_text(key)} must have type "{spec[key]}", '
                f"not {caller_text(signature)}"
            )
        parsed[key] = value.value
    return parsed
