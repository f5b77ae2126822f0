"""The daemon's state as people and scripts read it: names instead of object paths, state names
instead of numbers, local times for people and RFC 3339 (UTC) for JSON.

Everything here is pure: a ``Snapshot`` (one ``GetManagedObjects``) in, text or JSON out.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stunmeshd.bus.names import DEVICE_IFACE, MANAGER_IFACE, PEER_IFACE, ROOT
from stunmeshd.model import DeviceState, ManagerState, PeerState

STATE_ENUMS: dict[str, Any] = {
    MANAGER_IFACE: ManagerState,
    DEVICE_IFACE: DeviceState,
    PEER_IFACE: PeerState,
}
# properties holding µs since the epoch (0 = never)
TIME_PROPS = frozenset({"LastRefresh", "NextRefresh", "LatestHandshake", "LastUpdate"})
JSON_NAMES = {"FwMark": "fwmark", "Ifindex": "ifindex", "Device": "interface"}


# ---- the daemon's state, as read in one go -------------------------------------------------


@dataclass
class Snapshot:
    manager: dict[str, Any]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> properties
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_bus(cls, manager: dict[str, Any], objects: dict[str, Any]) -> Snapshot:
        snap = cls(manager=manager)
        for path, interfaces in objects.items():
            if DEVICE_IFACE in interfaces:
                snap.devices[path] = interfaces[DEVICE_IFACE]
            if PEER_IFACE in interfaces:
                snap.peers[path] = interfaces[PEER_IFACE]
        return snap

    def device_name(self, path: str) -> str:
        return str(self.devices.get(path, {}).get("Interface", "?"))

    def peer_name(self, path: str) -> str:
        """``wg0/hostB``: the peer's name qualified by its interface."""
        peer = self.peers.get(path, {})
        return f"{self.device_name(str(peer.get('Device', '')))}/{peer.get('Name', '?')}"

    def name(self, path: str) -> str:
        if path in self.devices:
            return self.device_name(path)
        if path in self.peers:
            return self.peer_name(path)
        return "manager" if path == ROOT else path

    def sorted_devices(self) -> list[tuple[str, dict[str, Any]]]:
        return sorted(self.devices.items(), key=lambda item: str(item[1].get("Interface", "")))

    def peer_rows(self, interface: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows = [
            (path, props)
            for path, props in self.peers.items()
            if interface is None or self.device_name(props.get("Device", "")) == interface
        ]
        return sorted(rows, key=lambda r: (self.device_name(r[1].get("Device", "")), r[0]))

    # ---- JSON: names, state names, RFC 3339 times; the object path kept as object_path -----

    def convert(self, interface: str, props: dict[str, Any]) -> dict[str, Any]:
        """Properties -> JSON fields. Unknown (newer) properties pass through in snake_case."""
        out: dict[str, Any] = {}
        for key, value in props.items():
            if key == "State" and interface in STATE_ENUMS:
                out["state"] = state_name(STATE_ENUMS[interface], value)
                out["state_code"] = value
            elif key in TIME_PROPS:
                out[snake(key)] = rfc3339(value)
            elif key == "Device":
                out["interface"] = self.device_name(str(value))
            elif key == "Peers":
                out["peers"] = [self.peer_name(str(p)) for p in value]
            elif key == "Devices":
                out["devices"] = [self.device_name(str(p)) for p in value]
            elif key == "RefreshInterval":
                out["refresh_interval_s"] = int(value) / 1_000_000
            else:
                out[JSON_NAMES.get(key, snake(key))] = value
        return out

    def manager_json(self) -> dict[str, Any]:
        return self.convert(MANAGER_IFACE, self.manager)

    def device_json(self, path: str) -> dict[str, Any]:
        return {**self.convert(DEVICE_IFACE, self.devices[path]), "object_path": path}

    def peer_json(self, path: str) -> dict[str, Any]:
        data = self.convert(PEER_IFACE, self.peers[path])
        return {**data, "peer": self.peer_name(path), "object_path": path}

    def to_json(self) -> dict[str, Any]:
        return {
            "manager": self.manager_json(),
            "devices": [self.device_json(p) for p, _ in self.sorted_devices()],
            "peers": [self.peer_json(p) for p, _ in self.peer_rows()],
        }


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# ---- values --------------------------------------------------------------------------------


def state_name(enum: Any, value: Any) -> str:
    try:
        return str(enum(int(value)).name.lower().replace("_", "-"))
    except (ValueError, TypeError):
        return str(value)


def _seconds(us: Any) -> float | None:
    try:
        stamp = int(us) / 1_000_000
    except (TypeError, ValueError):
        return None
    return stamp if stamp > 0 else None


def rfc3339(us: Any) -> str | None:
    """µs since the epoch -> ``2026-12-04T20:33:00.123Z``; None for never (0)."""
    stamp = _seconds(us)
    if stamp is None:
        return None
    text = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def rfc3339_now() -> str:
    return rfc3339(time.time() * 1_000_000) or ""


def ago(us: Any, now: float | None = None) -> str:
    """µs since the epoch -> "12s ago" / "in 5m" / "-" for never."""
    stamp = _seconds(us)
    if stamp is None:
        return "-"
    delta = (now or time.time()) - stamp
    future = delta < 0
    delta = abs(delta)
    if delta < 90:
        text = f"{delta:.0f}s"
    elif delta < 90 * 60:
        text = f"{delta / 60:.0f}m"
    elif delta < 36 * 3600:
        text = f"{delta / 3600:.0f}h"
    else:
        text = f"{delta / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def when(us: Any, now: float | None = None) -> str:
    """µs since the epoch -> ``2026-12-04 21:33:00 CET (12s ago)``, "never" for 0."""
    stamp = _seconds(us)
    if stamp is None:
        return "never"
    local = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))
    return f"{local} ({ago(us, now)})"


def duration(us: Any) -> str:
    seconds = int(us or 0) / 1_000_000
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:g}s"


def size(count: Any) -> str:
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover (loop returns)


def short_key(key: str, width: int = 12) -> str:
    """A WireGuard key shortened so it stays recognizable in a table: ``zo060cy2M+x…``."""
    return key if len(key) <= width else key[: width - 1] + "…"


def fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…" if width > 0 else ""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    shrink: Sequence[int] = (),
    width: int | None = None,
) -> str:
    """Columns padded to fit; the ``shrink`` columns give way (with "…") to fit ``width``."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    gap = 2
    excess = sum(widths) + gap * (len(widths) - 1) - width
    for i in shrink:
        if excess <= 0:
            break
        floor = max(len(headers[i]), 8)
        cut = min(excess, max(widths[i] - floor, 0))
        widths[i] -= cut
        excess -= cut
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [fit(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines)


# ---- text views ----------------------------------------------------------------------------


def render_status(snap: Snapshot) -> str:
    m = snap.manager
    lines = [
        f"stunmeshd {m.get('Version', '?')}: {state_name(ManagerState, m.get('State', 0))}",
        f"STUN servers: {', '.join(m.get('StunServers', [])) or '-'}",
        f"refresh interval: {duration(m.get('RefreshInterval', 0))}",
    ]
    if not snap.devices:
        lines.append("devices: none")
    for _path, dev in snap.sorted_devices():
        peers = [p for _, p in snap.peer_rows(str(dev.get("Interface")))]
        connected = sum(1 for p in peers if int(p.get("State", 0)) == PeerState.CONNECTED)
        endpoints = ", ".join(dev.get("PublicEndpoints", [])) or "no endpoint"
        line = (
            f"{dev.get('Interface')}: {state_name(DeviceState, dev.get('State', 0))}, "
            f"{endpoints}, NAT {dev.get('NatMapping', 'unknown')}, "
            f"{connected}/{len(peers)} peers connected"
        )
        if dev.get("PortMapping"):
            line += f", port mapped by {dev['PortMapping']} to {dev.get('PortMappingEndpoint')}"
        if dev.get("LastError"):
            line += f" — {dev['LastError']}"
        lines.append(line)
    return "\n".join(lines)


def render_devices(snap: Snapshot, width: int | None = None) -> str:
    rows = []
    for _path, dev in snap.sorted_devices():
        rows.append(
            [
                str(dev.get("Interface", "")),
                state_name(DeviceState, dev.get("State", 0)),
                ", ".join(dev.get("PublicEndpoints", [])) or "-",
                str(dev.get("NatMapping", "")),
                str(len(dev.get("Peers", []))),
                ago(dev.get("LastRefresh", 0)),
                short_key(str(dev.get("PublicKey", ""))),
                str(dev.get("LastError", "")) or "-",
            ]
        )
    headers = ["INTERFACE", "STATE", "ENDPOINTS", "NAT", "PEERS", "REFRESHED", "KEY", "ERROR"]
    return table(headers, rows, shrink=(7, 6, 3, 2), width=width)


def render_peers(snap: Snapshot, interface: str | None, width: int | None = None) -> str:
    rows = []
    for _path, peer in snap.peer_rows(interface):
        rows.append(
            [
                snap.device_name(peer.get("Device", "")),
                str(peer.get("Name", "")),
                state_name(PeerState, peer.get("State", 0)),
                str(peer.get("Endpoint", "")) or "-",
                ago(peer.get("LatestHandshake", 0)),
                short_key(str(peer.get("PublicKey", ""))),
                str(peer.get("Store", "")),
                str(peer.get("LastError", "")) or "-",
            ]
        )
    headers = ["INTERFACE", "PEER", "STATE", "ENDPOINT", "HANDSHAKE", "KEY", "STORE", "ERROR"]
    return table(headers, rows, shrink=(7, 5, 1, 3), width=width)


def _block(title: str, fields: Sequence[tuple[str, str]]) -> str:
    """networkctl-style: a title line, then right-aligned labels; long values are not cut."""
    label_width = max(len(label) for label, _ in fields)
    lines = [f"● {title}"]
    for label, value in fields:
        lines.append(f"  {label:>{label_width}}: {value}")
    return "\n".join(lines)


def fwmark(value: Any) -> str:
    mark = int(value or 0)
    return f"0x{mark:x}" if mark else "off"


def render_device(snap: Snapshot, path: str, now: float | None = None) -> str:
    dev = snap.devices[path]
    peers = [
        f"{p.get('Name')} ({state_name(PeerState, p.get('State', 0))})"
        for _, p in snap.peer_rows(str(dev.get("Interface")))
    ]
    fields = [
        ("State", state_name(DeviceState, dev.get("State", 0))),
        ("Backend", str(dev.get("Backend", "")) or "-"),
        ("Ifindex", str(dev.get("Ifindex", "")) or "-"),
        ("Public key", str(dev.get("PublicKey", "")) or "-"),
        ("Listen port", str(dev.get("ListenPort", "")) or "-"),
        ("FwMark", fwmark(dev.get("FwMark", 0))),
        ("Protocol", str(dev.get("Protocol", "")) or "-"),
        ("Public endpoints", ", ".join(dev.get("PublicEndpoints", [])) or "none"),
        ("NAT mapping", nat_text(str(dev.get("NatMapping", "")))),
        *port_mapping_fields(dev, now),
        ("Last refresh", when(dev.get("LastRefresh", 0), now)),
        ("Next refresh", when(dev.get("NextRefresh", 0), now)),
        ("Last error", str(dev.get("LastError", "")) or "none"),
        ("Peers", ", ".join(peers) or "none"),
    ]
    return _block(str(dev.get("Interface", path)), fields)


NAT_TEXT = {
    "endpoint-independent": "endpoint-independent (peers can reach the STUN-discovered port)",
    "address-dependent": "address-dependent (a peer cannot use the discovered port; "
    "direct connections need the peer to be reachable)",
    "address-and-port-dependent": "address-and-port-dependent (symmetric: a peer cannot use "
    "the discovered port; direct connections need the peer to be reachable)",
    "unknown": "unknown (not measured yet, or the STUN servers cannot tell)",
}


def nat_text(mapping: str) -> str:
    return NAT_TEXT.get(mapping, mapping or "unknown")


def port_mapping_fields(dev: dict[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """The router's mapping of WireGuard's port, or why there is none (none from an older
    daemon that lacks the properties)."""
    if "PortMapping" not in dev:
        return []
    protocol = str(dev.get("PortMapping", ""))
    if protocol:
        mapped = f"{dev.get('PortMappingEndpoint', '')} by {protocol}"
        mapped += f", expires {when(dev.get('PortMappingExpires', 0), now)}"
    else:
        mapped = f"none ({dev.get('PortMappingReason', '') or 'not tried'})"
    source = str(dev.get("EndpointSource", "")) or "stun"
    return [("Port mapping", mapped), ("Published from", source)]


def render_peer(snap: Snapshot, path: str, now: float | None = None) -> str:
    peer = snap.peers[path]
    fields = [
        ("State", state_name(PeerState, peer.get("State", 0))),
        ("Interface", snap.device_name(str(peer.get("Device", "")))),
    ]
    if "Description" in peer:
        fields.append(("Description", str(peer.get("Description", "")) or "-"))
    fields += [
        ("Public key", str(peer.get("PublicKey", "")) or "-"),
        ("Store", str(peer.get("Store", "")) or "-"),
        ("Endpoint", str(peer.get("Endpoint", "")) or "none"),
        ("Discovered", str(peer.get("DiscoveredEndpoint", "")) or "none"),
        ("Handshake", when(peer.get("LatestHandshake", 0), now)),
        ("Last update", when(peer.get("LastUpdate", 0), now)),
        (
            "Transfer",
            f"{size(peer.get('RxBytes', 0))} received, {size(peer.get('TxBytes', 0))} sent",
        ),
        ("Last error", str(peer.get("LastError", "")) or "none"),
    ]
    return _block(snap.peer_name(path), fields)
