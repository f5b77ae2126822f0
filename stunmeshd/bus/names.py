"""Every D-Bus name stunmeshd uses, in one place (the data files in dbus/ and polkit/ repeat them).

Changing a name here is an API break: bump the ``1`` in the bus name instead.
"""

from __future__ import annotations

BUS_NAME = "io.github.stunmeshd.StunMesh1"
ROOT = "/io/github/stunmeshd/StunMesh1"

MANAGER_IFACE = BUS_NAME
DEVICE_IFACE = f"{BUS_NAME}.Device"
PEER_IFACE = f"{BUS_NAME}.Peer"

DEVICES_PATH = f"{ROOT}/Devices"
PEERS_PATH = f"{ROOT}/Peers"


def device_path(number: int) -> str:
    return f"{DEVICES_PATH}/{number}"


def peer_path(number: int) -> str:
    return f"{PEERS_PATH}/{number}"


# ---- standard interfaces ------------------------------------------------------------------

DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
INTROSPECTABLE_IFACE = "org.freedesktop.DBus.Introspectable"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
PEER_STD_IFACE = "org.freedesktop.DBus.Peer"


# ---- errors -------------------------------------------------------------------------------


class Error:
    """Error names a caller may receive (dbus-api.md, "Errors")."""

    ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
    INTERACTIVE_AUTHORIZATION_REQUIRED = (
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    )
    INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
    # a caller sent Refresh faster than its per-sender allowance (a standard name on purpose)
    LIMITS_EXCEEDED = "org.freedesktop.DBus.Error.LimitsExceeded"
    UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"
    SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
    NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
    NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
    # D-Bus activation of an installed but disabled (or masked) stunmeshd: the bus asks systemd
    # for the unit's alias, which only `systemctl enable` creates, and passes systemd's answer on
    NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
    UNIT_MASKED = "org.freedesktop.systemd1.UnitMasked"

    NO_SUCH_DEVICE = f"{BUS_NAME}.Error.NoSuchDevice"
    NO_SUCH_PEER = f"{BUS_NAME}.Error.NoSuchPeer"
    NOT_READY = f"{BUS_NAME}.Error.NotReady"
    STUN_FAILED = f"{BUS_NAME}.Error.StunFailed"
    STORE_FAILED = f"{BUS_NAME}.Error.StoreFailed"
    TIMEOUT = f"{BUS_NAME}.Error.Timeout"
    FAILED = f"{BUS_NAME}.Error.Failed"


# ---- polkit -------------------------------------------------------------------------------

ACTION_REFRESH = f"{BUS_NAME}.refresh"
ACTION_RELOAD = f"{BUS_NAME}.reload"
ACTION_CONFIGURE = f"{BUS_NAME}.configure"

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
