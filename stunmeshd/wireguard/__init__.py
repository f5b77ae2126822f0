"""WireGuard backends: wireguard-go through UAPI, kernel WireGuard through generic netlink.

``backend_for`` picks one per interface the way ``wg`` does: a UAPI socket for the interface
means a userspace implementation owns it; otherwise it is the kernel's. The netlink backend is
imported only when a kernel interface is driven.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stunmeshd.wireguard.base import DeviceInfo, PeerInfo, WireGuardBackend
from stunmeshd.wireguard.uapi import DEFAULT_SOCKET_DIR, UapiBackend

if TYPE_CHECKING:
    from _typeshed import StrPath

    from stunmeshd.wireguard.netlink import NetlinkBackend

__all__ = [
    "DeviceInfo",
    "NetlinkBackend",
    "PeerInfo",
    "UapiBackend",
    "WireGuardBackend",
    "backend_for",
]


def backend_for(ifname: str, *, uapi_dir: StrPath = DEFAULT_SOCKET_DIR) -> WireGuardBackend:
    """The backend that drives ``ifname``: wireguard-go when its UAPI socket exists, else kernel.

    Only a stat: the choice is made when called, so a caller that saw DeviceNotFound can ask
    again once the interface (or wireguard-go) has come up.
    """
    uapi = UapiBackend(uapi_dir)
    if uapi.has_device(ifname):
        return uapi
    from stunmeshd.wireguard.netlink import NetlinkBackend

    return NetlinkBackend()


def __getattr__(name: str) -> Any:
    if name == "NetlinkBackend":
        from stunmeshd.wireguard.netlink import NetlinkBackend

        return NetlinkBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
