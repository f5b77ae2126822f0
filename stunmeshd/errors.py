"""Domain exceptions shared by every layer.

Each kind of failure a user can cause has its own class, so the daemon can put a clear
state on the bus (``bus/errors.py`` maps these to D-Bus error names) instead of a traceback.
"""

from __future__ import annotations


class StunmeshError(Exception):
    """Base of every error stunmeshd reports on purpose."""


class ConfigError(StunmeshError):
    """The configuration is invalid. The message names the file, the key path and the line."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self.line = line
        self.reason = message
        where = path or "<config>"
        if line is not None:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}")


class StunError(StunmeshError):
    """Discovery failed: no STUN server answered, or every answer was unusable."""


class StoreError(StunmeshError):
    """A store plugin failed (process error, timeout, bad output, HTTP error, ...)."""


class RecordError(StunmeshError):
    """A fetched record was refused: it does not open, is malformed, reflected or replayed."""


class WireGuardError(StunmeshError):
    """Talking to WireGuard failed."""


class DeviceNotFound(WireGuardError):
    """The WireGuard interface does not exist (or vanished)."""


class PortMapError(StunmeshError):
    """No port mapping: the router does not speak a mapping protocol, refused, or lied."""


class PortMapParseError(PortMapError, ValueError):
    """A PCP, NAT-PMP or UPnP answer is malformed or not an answer to our request."""
