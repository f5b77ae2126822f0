"""What the applet shows for a tree: the overall state, the tooltip and the menu's entries.

Pure functions of the mirrored tree (and the clock, for handshake ages), so the tray item, the
menu and the tests all agree on one reading of the daemon's state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from stunmeshd.applet.mirror import Tree
from stunmeshd.bus.names import ACTION_REFRESH, DEVICE_IFACE, MANAGER_IFACE, PEER_IFACE, ROOT
from stunmeshd.ctl.view import ago, state_name
from stunmeshd.model import DeviceState, ManagerState, PeerState

SEP = " — "


class Overall(StrEnum):
    """The one state the icon shows."""

    CONNECTED = "connected"  # every peer connected, no device failing
    CONNECTING = "connecting"  # nothing failed, but not every peer is connected yet
    FAILED = "failed"  # a peer or a device failed
    OFFLINE = "offline"  # stunmeshd is not running (or not installed)


@dataclass(frozen=True)
class Counts:
    peers: int  # the peers the daemon works on
    connected: int
    failed: int
    devices_failed: int
    inactive: int  # configured, but not worked on (e.g. not on the WireGuard interface)


def _inactive(state: object) -> bool:
    """PeerState's inactive states, also ones newer than this client (numbered upwards)."""
    return isinstance(state, int) and state >= PeerState.NOT_ON_DEVICE


def counts(tree: Tree) -> Counts:
    states = [p.get("State") for p in tree.peers.values()]
    active = [s for s in states if not _inactive(s)]
    return Counts(
        peers=len(active),
        connected=sum(s == PeerState.CONNECTED for s in active),
        failed=sum(s == PeerState.FAILED for s in active),
        devices_failed=sum(d.get("State") == DeviceState.FAILED for d in tree.devices.values()),
        inactive=len(states) - len(active),
    )


def overall(tree: Tree) -> Overall:
    if not tree.running:
        return Overall.OFFLINE
    c = counts(tree)
    if c.failed or c.devices_failed or tree.manager.get("State") == ManagerState.DEGRADED:
        return Overall.FAILED
    if c.connected == c.peers:
        return Overall.CONNECTED
    return Overall.CONNECTING


def summary(tree: Tree) -> str:
    """One line: the menu's first entry and the tooltip's text."""
    if not tree.running:
        return "stunmeshd is not running"
    c = counts(tree)
    parts = [f"{c.connected} of {c.peers} peers connected"]
    if c.failed:
        parts.append(f"{c.failed} failed")
    if c.devices_failed:
        parts.append(f"{c.devices_failed} interface{'s' if c.devices_failed > 1 else ''} failing")
    if c.inactive:
        parts.append(f"{c.inactive} inactive")
    return ", ".join(parts)


def tooltip(tree: Tree) -> tuple[str, str]:
    """(title, text) for the StatusNotifierItem's ToolTip."""
    return "stunmeshd", summary(tree)


# ---- the menu -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One menu entry. ``key`` is stable across rebuilds (the menu keeps ids by it); a
    ``target`` (object path, interface) makes the entry a "Refresh" of that object."""

    key: str
    label: str = ""
    separator: bool = False
    target: tuple[str, str] | None = None
    enabled: bool = True  # False: polkit says "no" to this user (greyed out, not clickable)


def device_label(props: dict[str, object]) -> str:
    parts = [str(props.get("Interface", "?")), state_name(DeviceState, props.get("State", 0))]
    endpoints = props.get("PublicEndpoints") or []
    if isinstance(endpoints, list) and endpoints:
        parts.append(", ".join(str(e) for e in endpoints))
    return SEP.join(parts)


def peer_label(props: dict[str, object], now: float) -> str:
    state = state_name(PeerState, props.get("State", 0)).replace("-", " ")
    parts = [str(props.get("Name") or "?"), state]
    parts.append(str(props.get("Endpoint") or "no endpoint"))
    handshake = ago(props.get("LatestHandshake", 0), now)
    parts.append("no handshake" if handshake == "-" else f"handshake {handshake}")
    return SEP.join(parts)


def _num(path: str) -> int:
    tail = path.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def entries(tree: Tree, now: float | None = None) -> list[Entry]:
    """The whole menu: a summary, then each device with its peers and their Refresh entries."""
    now = time.time() if now is None else now
    head = f"stunmeshd: {summary(tree)}" if tree.running else summary(tree)
    items = [Entry("summary", head), Entry("sep-top", separator=True)]
    if not tree.running:
        return items[:1]
    allowed = tree.permissions.get(ACTION_REFRESH, "yes") != "no"  # "auth": the agent asks
    for dev_path in sorted(tree.devices, key=_num):
        dev = tree.devices[dev_path]
        name = str(dev.get("Interface", "?"))
        items.append(Entry(f"info:{dev_path}", device_label(dev)))
        peers = [p for p in sorted(tree.peers, key=_num) if tree.peers[p].get("Device") == dev_path]
        for peer_path in peers:
            peer = tree.peers[peer_path]
            items.append(Entry(f"info:{peer_path}", "    " + peer_label(peer, now)))
            items.append(
                Entry(
                    f"refresh:{peer_path}",
                    f"    Refresh {peer.get('Name') or '?'}",
                    target=(peer_path, PEER_IFACE),
                    enabled=allowed,
                )
            )
        items.append(
            Entry(
                f"refresh:{dev_path}",
                f"Refresh {name}",
                target=(dev_path, DEVICE_IFACE),
                enabled=allowed,
            )
        )
        items.append(Entry(f"sep:{dev_path}", separator=True))
    items.append(Entry("refresh:all", "Refresh all", target=(ROOT, MANAGER_IFACE), enabled=allowed))
    return items
