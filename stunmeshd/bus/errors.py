"""Domain exceptions and cycle results -> named D-Bus errors (dbus-api.md, "Errors").

A caller must always get a name it can act on, never dbus-fast's generic ``ServiceError`` with a
traceback in the daemon's log only; and an error text must never carry a secret, so unexpected
exceptions are reduced to their type while the traceback goes to the log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from dbus_fast import DBusError

from stunmeshd.bus.names import Error
from stunmeshd.errors import (
    ConfigError,
    DeviceNotFound,
    RecordError,
    StoreError,
    StunError,
    StunmeshError,
    WireGuardError,
)

log = logging.getLogger(__name__)

# most specific first: DeviceNotFound is a WireGuardError
_CAUSES: tuple[tuple[type[StunmeshError], str], ...] = (
    (DeviceNotFound, Error.NOT_READY),
    (StunError, Error.STUN_FAILED),
    (StoreError, Error.STORE_FAILED),
    (RecordError, Error.STORE_FAILED),
    (WireGuardError, Error.NOT_READY),
    (ConfigError, Error.FAILED),
)


def error_name_for(cause: type[BaseException] | None) -> str:
    """The D-Bus error name for a failed cycle's cause (``Error.Failed`` when unknown)."""
    if cause is not None:
        for kind, name in _CAUSES:
            if issubclass(cause, kind):
                return name
    return Error.FAILED


def invalid_args(text: str) -> DBusError:
    return DBusError(Error.INVALID_ARGS, text)


def failed(text: str) -> DBusError:
    return DBusError(Error.FAILED, text)


def to_dbus_error(exc: BaseException, *, member: str) -> DBusError:
    """Translate an exception raised while serving ``member``."""
    if isinstance(exc, DBusError):
        return exc
    if isinstance(exc, StunmeshError):
        return DBusError(error_name_for(type(exc)), str(exc) or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return DBusError(Error.TIMEOUT, f"{member}: timed out")
    log.error("bus method failed member=%s", member, exc_info=exc)
    return DBusError(Error.FAILED, f"{member}: internal error ({type(exc).__name__}); see the log")


@contextlib.contextmanager
def translated(member: str) -> Iterator[None]:
    """Wrap a method body so every exception leaves as a named D-Bus error."""
    try:
        yield
    except DBusError:
        raise
    except Exception as exc:
        raise to_dbus_error(exc, member=member) from None
