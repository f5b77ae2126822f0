"""stunmeshctl: the command-line client of stunmeshd (nmcli-like), over D-Bus only.

Reads take one ``GetManagedObjects`` call; actions call the documented methods and leave the
decision to the daemon's polkit check. Exit codes are part of the interface, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import (
    BusType,
    DBusError,
    Message,
    MessageFlag,
    MessageType,
    Variant,
    unpack_variants,
)
from dbus_fast.aio import MessageBus

from stunmeshd.bus.names import (
    BUS_NAME,
    DBUS_NAME,
    DBUS_PATH,
    DEVICE_IFACE,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
)
from stunmeshd.model import DeviceState, ManagerState, PeerState

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NOT_AUTHORIZED = 4

CALL_TIMEOUT = 25.0  # s, the usual D-Bus client timeout
INTERACTIVE_TIMEOUT = 120.0  # s: a polkit agent may be asking for a password

EPILOG = """\
exit status:
  0  success
  1  failure (the daemon answered with an error, e.g. a refresh with --wait failed)
  2  usage error (bad command line or argument)
  3  stunmeshd is not running (or the bus cannot be reached)
  4  not authorized (polkit said no; run as root or see the polkit rules)

The bus is the system bus unless --bus says otherwise; DBUS_SYSTEM_BUS_ADDRESS is honoured.
"""


class CtlError(Exception):
    """A failure to report on one line, with the exit status it means."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# ---- talking to the daemon ---------------------------------------------------------------


class Client:
    """One bus connection and the calls stunmeshctl makes."""

    def __init__(self, bus: MessageBus, *, interactive: bool = True) -> None:
        self.bus = bus
        self.interactive = interactive

    @classmethod
    async def connect(cls, address: str, *, interactive: bool = True) -> Client:
        kwargs: dict[str, Any]
        if address == "system":
            kwargs = {"bus_type": BusType.SYSTEM}
        elif address == "session":
            kwargs = {"bus_type": BusType.SESSION}
        else:
            kwargs = {"bus_address": address}
        try:
            bus = await asyncio.wait_for(MessageBus(**kwargs).connect(), CALL_TIMEOUT)
        except Exception as exc:
            raise CtlError(
                f"cannot connect to the {address} bus ({exc}); is stunmeshd running?",
                EXIT_NOT_RUNNING,
            ) from None
        return cls(bus, interactive=interactive)

    def close(self) -> None:
        self.bus.disconnect()

    async def call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        action: bool = False,
        destination: str = BUS_NAME,
    ) -> list[Any]:
        """Call a method; errors become CtlError with the right exit status."""
        flags = MessageFlag.NONE
        timeout = CALL_TIMEOUT
        if action and self.interactive:
            flags = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION
            timeout = INTERACTIVE_TIMEOUT
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
            flags=flags,
        )
        try:
            async with asyncio.timeout(timeout):
                reply = await self.bus.call(msg)
        except TimeoutError:
            raise CtlError(f"{member}: no answer within {timeout:.0f} s") from None
        except (OSError, EOFError) as exc:
            raise CtlError(f"the bus connection failed: {exc}", EXIT_NOT_RUNNING) from None
        if reply is None:
            raise CtlError(f"{member}: no answer")
        if reply.message_type is MessageType.ERROR:
            raise error_from_reply(reply.error_name or "", reply.body, member)
        return list(reply.body)

    async def managed_objects(self) -> Snapshot:
        manager = await self.call(ROOT, PROPERTIES_IFACE, "GetAll", "s", [MANAGER_IFACE])
        objects = await self.call(ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects")
        return Snapshot.from_bus(unpack_variants(manager[0]), unpack_variants(objects[0]))

    async def add_match(self, rule: str) -> None:
        await self.call(DBUS_PATH, DBUS_NAME, "AddMatch", "s", [rule], destination=DBUS_NAME)


def error_from_reply(name: str, body: Sequence[Any], member: str) -> CtlError:
    text = str(body[0]) if body and isinstance(body[0], str) else name
    if name in (Error.SERVICE_UNKNOWN, Error.NAME_HAS_NO_OWNER):
        return CtlError("stunmeshd is not running (nobody owns " + BUS_NAME + ")", EXIT_NOT_RUNNING)
    if name in (Error.NO_SUCH_UNIT, Error.UNIT_MASKED):
        return CtlError(
            f"stunmeshd is not running and the bus may not start it ({text}); "
            "enable it: systemctl enable --now stunmeshd",
            EXIT_NOT_RUNNING,
        )
    if name == Error.ACCESS_DENIED:
        return CtlError(f"not authorized to {member}: {text}", EXIT_NOT_AUTHORIZED)
    if name == Error.INTERACTIVE_AUTHORIZATION_REQUIRED:
        return CtlError(
            f"not authorized to {member} without authentication: {text}",
            EXIT_NOT_AUTHORIZED,
        )
    if name == Error.INVALID_ARGS:
        return CtlError(f"{member}: {text}", EXIT_USAGE)
    short = name.rsplit(".", 1)[-1]
    return CtlError(f"{member} failed ({short}): {text}")


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

    def peer_rows(self, interface: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows = [
            (path, props)
            for path, props in self.peers.items()
            if interface is None or self.device_name(props.get("Device", "")) == interface
        ]
        return sorted(rows, key=lambda r: (self.device_name(r[1].get("Device", "")), r[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "manager": self.manager,
            "devices": [{"path": p, **v} for p, v in sorted(self.devices.items(), key=_num)],
            "peers": [{"path": p, **v} for p, v in sorted(self.peers.items(), key=_num)],
        }


def _num(item: tuple[str, Any]) -> int:
    tail = item[0].rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


# ---- formatting ----------------------------------------------------------------------------


def state_name(enum: Any, value: Any) -> str:
    try:
        return str(enum(int(value)).name.lower())
    except (ValueError, TypeError):
        return str(value)


def ago(us: Any, now: float | None = None) -> str:
    """µs since the epoch -> "12s ago" / "-" for never."""
    try:
        stamp = int(us) / 1_000_000
    except (TypeError, ValueError):
        return "-"
    if stamp <= 0:
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


def duration(us: Any) -> str:
    seconds = int(us or 0) / 1_000_000
    if seconds and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:g}s"


def short_key(key: str, width: int = 12) -> str:
    """A WireGuard key shortened so it stays recognizable: ``zo060cy2…``."""
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


def render_status(snap: Snapshot) -> str:
    m = snap.manager
    lines = [
        f"stunmeshd {m.get('Version', '?')}: {state_name(ManagerState, m.get('State', 0))}",
        f"STUN servers: {', '.join(m.get('StunServers', [])) or '-'}",
        f"refresh interval: {duration(m.get('RefreshInterval', 0))}",
    ]
    if not snap.devices:
        lines.append("devices: none")
    for _path, dev in sorted(snap.devices.items(), key=_num):
        peers = [p for _, p in snap.peer_rows(str(dev.get("Interface")))]
        connected = sum(1 for p in peers if int(p.get("State", 0)) == PeerState.CONNECTED)
        endpoints = ", ".join(dev.get("PublicEndpoints", [])) or "no endpoint"
        line = (
            f"{dev.get('Interface')}: {state_name(DeviceState, dev.get('State', 0))}, "
            f"{endpoints}, NAT {dev.get('NatMapping', 'unknown')}, "
            f"{connected}/{len(peers)} peers connected"
        )
        if dev.get("LastError"):
            line += f" — {dev['LastError']}"
        lines.append(line)
    return "\n".join(lines)


def render_devices(snap: Snapshot, width: int | None = None) -> str:
    rows = []
    for _path, dev in sorted(snap.devices.items(), key=_num):
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


# ---- commands ------------------------------------------------------------------------------


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    snap = await client.managed_objects()
    if args.json:
        emit_json(snap.to_json())
    else:
        print(render_status(snap))
    return EXIT_OK


async def cmd_devices(client: Client, args: argparse.Namespace) -> int:
    snap = await client.managed_objects()
    if args.json:
        emit_json(snap.to_json()["devices"])
    else:
        print(render_devices(snap))
    return EXIT_OK


async def cmd_peers(client: Client, args: argparse.Namespace) -> int:
    snap = await client.managed_objects()
    if args.interface and args.interface not in {snap.device_name(p) for p in snap.devices}:
        raise CtlError(f"no managed interface {args.interface!r}")
    if args.json:
        emit_json([{"path": p, **v} for p, v in snap.peer_rows(args.interface)])
    else:
        print(render_peers(snap, args.interface))
    return EXIT_OK


async def cmd_permissions(client: Client, args: argparse.Namespace) -> int:
    (perms,) = await client.call(ROOT, MANAGER_IFACE, "GetPermissions")
    if args.json:
        emit_json(perms)
    else:
        for action, answer in sorted(perms.items()):
            print(f"{action.rsplit('.', 1)[-1]:<10} {answer}")
    return EXIT_OK


def resolve_target(snap: Snapshot, target: str) -> tuple[str, str, str]:
    """IFACE, a peer's public key, IFACE/NAME or a peer's NAME -> (path, interface, what)."""
    for path, dev in snap.devices.items():
        if dev.get("Interface") == target:
            return path, DEVICE_IFACE, f"interface {target}"
    matches = [p for p, v in snap.peers.items() if v.get("PublicKey") == target]
    if not matches:
        iface, sep, name = target.partition("/")
        if not sep:
            iface, name = "", target
        matches = [
            p
            for p, v in snap.peers.items()
            if v.get("Name") == name
            and (not iface or snap.device_name(v.get("Device", "")) == iface)
        ]
    if len(matches) > 1:
        raise CtlError(f"{target!r} names several peers; say INTERFACE/PEER", EXIT_USAGE)
    if not matches:
        raise CtlError(f"no managed interface or peer {target!r}", EXIT_USAGE)
    peer = snap.peers[matches[0]]
    device = snap.device_name(peer.get("Device", ""))
    return matches[0], PEER_IFACE, f"peer {peer.get('Name')} on {device}"


async def cmd_refresh(client: Client, args: argparse.Namespace) -> int:
    options = {"wait": Variant("b", True)} if args.wait else {}
    path, interface, what = ROOT, MANAGER_IFACE, "all interfaces"
    if args.target:
        snap = await client.managed_objects()
        path, interface, what = resolve_target(snap, args.target)
    await client.call(path, interface, "Refresh", "a{sv}", [options], action=True)
    if not args.quiet:
        print(f"refreshed {what}" if args.wait else f"refresh of {what} requested")
    return EXIT_OK


async def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    await client.call(ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{}], action=True)
    if not args.quiet:
        print("configuration reloaded")
    return EXIT_OK


async def cmd_log_level(client: Client, args: argparse.Namespace) -> int:
    await client.call(ROOT, MANAGER_IFACE, "SetLogLevel", "s", [args.level], action=True)
    return EXIT_OK


# ---- monitor -------------------------------------------------------------------------------


class Monitor:
    """Prints one line per signal of the daemon, with names instead of object paths."""

    def __init__(
        self, client: Client, *, as_json: bool, out: Callable[[str], None] = print
    ) -> None:
        self.client = client
        self.as_json = as_json
        self.out = out
        self.names: dict[str, str] = {}  # object path -> "wg0" / "wg0/office"

    def label(self, path: str) -> str:
        if path == ROOT:
            return "manager"
        return self.names.get(path, path.removeprefix(ROOT + "/"))

    def learn(self, path: str, interfaces: dict[str, Any]) -> None:
        if DEVICE_IFACE in interfaces:
            self.names[path] = str(interfaces[DEVICE_IFACE].get("Interface", path))
        if PEER_IFACE in interfaces:
            peer = interfaces[PEER_IFACE]
            device = self.names.get(str(peer.get("Device", "")), "?")
            self.names[path] = f"{device}/{peer.get('Name', '?')}"

    async def run(self, stop: asyncio.Event) -> None:
        for rule in (
            f"type='signal',sender='{BUS_NAME}'",
            f"type='signal',sender='{DBUS_NAME}',member='NameOwnerChanged',arg0='{BUS_NAME}'",
        ):
            await self.client.add_match(rule)
        self.client.bus.add_message_handler(self.on_message)
        with contextlib.suppress(CtlError):  # not running yet: names come with InterfacesAdded
            objects = await self.client.call(ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects")
            for path, interfaces in sorted(unpack_variants(objects[0]).items()):
                self.learn(path, interfaces)
        disconnected = asyncio.ensure_future(self.client.bus.wait_for_disconnect())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([disconnected, stopped], return_when=asyncio.FIRST_COMPLETED)
        for fut in (disconnected, stopped):
            fut.cancel()
        if disconnected.done() and not disconnected.cancelled():
            raise CtlError("the bus connection was lost", EXIT_NOT_RUNNING)

    def on_message(self, msg: Message) -> None:
        if msg.message_type is not MessageType.SIGNAL:
            return
        try:
            event = self.describe(msg)
        except Exception as exc:  # a malformed signal must not end the monitor
            event = {"signal": msg.member, "path": msg.path, "error": str(exc)}
        if event is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        stamp += f".{int(time.time() * 1000) % 1000:03d}"
        if self.as_json:
            self.out(json.dumps({"time": stamp, **event}, sort_keys=True, default=str))
        else:
            detail = event.get("text", "")
            self.out(f"{stamp} {event['object']}: {event['signal']}{' ' if detail else ''}{detail}")

    def describe(self, msg: Message) -> dict[str, Any] | None:
        body = unpack_variants(list(msg.body))
        member = msg.member or ""
        if member == "NameOwnerChanged":
            running = bool(body[2])
            return {
                "object": "daemon",
                "signal": "started" if running else "stopped",
                "text": "",
                "owner": body[2],
            }
        path = msg.path or ""
        event: dict[str, Any] = {"object": self.label(path), "signal": member, "path": path}
        if member == "PropertiesChanged":
            interface, changed = body[0], body[1]
            event["changes"] = changed
            event["text"] = " ".join(
                f"{k}={self.show(interface, k, v)}" for k, v in sorted(changed.items())
            )
        elif member == "InterfacesAdded":
            self.learn(body[0], body[1])
            event.update(object=self.label(body[0]), signal="added", text=body[0])
        elif member == "InterfacesRemoved":
            event.update(object=self.label(body[0]), signal="removed", text=body[0])
        elif member == "RefreshCompleted":
            event.update(
                success=body[0], error=body[1], text="ok" if body[0] else f"failed: {body[1]}"
            )
        elif member == "EndpointChanged":
            event.update(endpoints=body[0], text=", ".join(body[0]) or "(none)")
        else:
            event["text"] = " ".join(
                self.label(str(b)) if str(b).startswith(ROOT) else str(b) for b in body
            )
        return event

    def show(self, interface: str, key: str, value: Any) -> str:
        if key == "State":
            enum = {
                MANAGER_IFACE: ManagerState,
                DEVICE_IFACE: DeviceState,
                PEER_IFACE: PeerState,
            }.get(interface)
            if enum is not None:
                return f"{value}({state_name(enum, value)})"
        if isinstance(value, list):
            return (
                ",".join(self.label(str(v)) if str(v).startswith(ROOT) else str(v) for v in value)
                or "[]"
            )
        if isinstance(value, str):
            return json.dumps(value) if (not value or " " in value) else value
        return str(value)


async def cmd_monitor(client: Client, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Monitor(client, as_json=args.json, out=lambda line: print(line, flush=True)).run(stop)
    return EXIT_OK


# ---- command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of text"
    )
    parser = argparse.ArgumentParser(
        prog="stunmeshctl",
        description="Query and control stunmeshd, the peer-to-peer WireGuard NAT traversal "
        "daemon, over D-Bus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bus",
        default="system",
        metavar="system|session|ADDRESS",
        help="the bus the daemon is on (default: system)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="print JSON instead of text (read commands and monitor)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.add_argument(
        "--no-ask-password",
        action="store_true",
        help="never let polkit ask for a password; fail with status 4 instead",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("status", parents=[common], help="the daemon and its interfaces in short")
    sub.add_parser("devices", parents=[common], help="managed WireGuard interfaces")
    peers = sub.add_parser("peers", parents=[common], help="peers (of one interface)")
    peers.add_argument("interface", nargs="?", metavar="IFACE")
    refresh = sub.add_parser(
        "refresh",
        help="rediscover, republish and re-fetch now",
        description="Refresh everything, one interface (IFACE), or one peer (its name, "
        "public key, or IFACE/NAME).",
    )
    refresh.add_argument("target", nargs="?", metavar="IFACE|PEER")
    refresh.add_argument(
        "--wait", action="store_true", help="return when the cycle has ended, failing if it failed"
    )
    sub.add_parser("reload", help="re-read the configuration file")
    level = sub.add_parser("log-level", help="change the daemon's log level")
    level.add_argument("level", choices=["debug", "info", "warning", "warn", "error"])
    sub.add_parser("permissions", parents=[common], help="what you may do (polkit)")
    sub.add_parser("monitor", parents=[common], help="print changes as they happen")
    return parser


COMMANDS = {
    "status": cmd_status,
    "devices": cmd_devices,
    "peers": cmd_peers,
    "refresh": cmd_refresh,
    "reload": cmd_reload,
    "log-level": cmd_log_level,
    "permissions": cmd_permissions,
    "monitor": cmd_monitor,
}


async def run(args: argparse.Namespace) -> int:
    client = await Client.connect(args.bus, interactive=not args.no_ask_password)
    try:
        return await COMMANDS[args.command](client, args)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        args.command = "status"
    try:
        return asyncio.run(run(args))
    except CtlError as exc:
        print(f"stunmeshctl: {exc}", file=sys.stderr)
        return exc.status
    except DBusError as exc:
        print(f"stunmeshctl: {exc.text}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `stunmeshctl peers | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
