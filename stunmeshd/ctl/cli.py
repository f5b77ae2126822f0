"""stunmeshctl's command line: the parser (also the source of its man page and completions) and
one function per command. Exit codes are part of the interface, for scripts (``client.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from dbus_fast import DBusError, Message, MessageType, Variant, unpack_variants

from stunmeshd import __version__
from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, MANAGER_IFACE, PEER_IFACE, ROOT, Error
from stunmeshd.ctl.client import (
    EXIT_FAILURE,
    EXIT_NO_SUCH,
    EXIT_OK,
    EXIT_STATUS_HELP,
    EXIT_USAGE,
    Client,
    CtlError,
    NoAnswer,
)
from stunmeshd.ctl.view import (
    Snapshot,
    render_device,
    render_devices,
    render_peer,
    render_peers,
    render_status,
    state_name,
)
from stunmeshd.model import DeviceState

LOG_LEVELS = ("debug", "info", "warning", "error")

EPILOG = (
    EXIT_STATUS_HELP
    + """
The bus is the system bus unless --bus says otherwise; DBUS_SYSTEM_BUS_ADDRESS is honoured.
JSON output names things (interfaces, peers as IFACE/NAME, states) and gives times in RFC 3339
(UTC, null for never); each object's D-Bus path is kept as "object_path".
"""
)


# ---- reading ---------------------------------------------------------------------------------


async def snapshot(client: Client) -> Snapshot:
    return Snapshot.from_bus(await client.manager(), await client.objects())


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def no_such(target: str, snap: Snapshot) -> CtlError:
    known = sorted(snap.device_name(p) for p in snap.devices)
    known += sorted(snap.peer_name(p) for p in snap.peers)
    hint = f" (managed: {', '.join(known)})" if known else " (stunmeshd manages nothing)"
    return CtlError(f"no managed interface or peer {target!r}{hint}", EXIT_NO_SUCH)


def find_device(snap: Snapshot, name: str) -> str | None:
    return next((p for p, d in snap.devices.items() if d.get("Interface") == name), None)


def resolve_target(snap: Snapshot, target: str) -> tuple[str, str, str]:
    """IFACE, a peer's public key, IFACE/NAME or a peer's NAME -> (path, interface, what)."""
    device = find_device(snap, target)
    if device is not None:
        return device, DEVICE_IFACE, f"interface {target}"
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
        names = ", ".join(sorted(snap.peer_name(p) for p in matches))
        raise CtlError(f"{target!r} names several peers ({names}); say IFACE/PEER", EXIT_USAGE)
    if not matches:
        raise no_such(target, snap)
    return matches[0], PEER_IFACE, f"peer {snap.peer_name(matches[0])}"


async def cmd_status(client: Client, args: argparse.Namespace) -> int:
    snap = await snapshot(client)
    if args.json:
        emit_json(snap.to_json())
    else:
        print(render_status(snap))
    return EXIT_OK


async def cmd_devices(client: Client, args: argparse.Namespace) -> int:
    snap = await snapshot(client)
    if args.json:
        emit_json(snap.to_json()["devices"])
    else:
        print(render_devices(snap))
    return EXIT_OK


async def cmd_peers(client: Client, args: argparse.Namespace) -> int:
    snap = await snapshot(client)
    if args.interface and find_device(snap, args.interface) is None:
        raise no_such(args.interface, snap)
    if args.json:
        emit_json([snap.peer_json(p) for p, _ in snap.peer_rows(args.interface)])
    else:
        print(render_peers(snap, args.interface))
    return EXIT_OK


async def cmd_show(client: Client, args: argparse.Namespace) -> int:
    """Everything about every interface (with its peers), one interface (with its), or one peer.

    JSON always has the same shape, ``{"devices": [...], "peers": [...]}``, whatever was asked.
    """
    snap = await snapshot(client)
    devices = [p for p, _ in snap.sorted_devices()]
    peers: list[str] = []
    if args.target:
        path, interface, _ = resolve_target(snap, args.target)
        devices = [path] if interface == DEVICE_IFACE else []
        peers = [] if interface == DEVICE_IFACE else [path]
    peers += [p for d in devices for p, _ in snap.peer_rows(snap.device_name(d))]
    if args.json:
        emit_json(
            {
                "devices": [snap.device_json(p) for p in devices],
                "peers": [snap.peer_json(p) for p in peers],
            }
        )
        return EXIT_OK
    blocks = [render_device(snap, p) for p in devices] + [render_peer(snap, p) for p in peers]
    print("\n\n".join(blocks) if blocks else "stunmeshd manages no interface")
    return EXIT_OK


async def cmd_permissions(client: Client, args: argparse.Namespace) -> int:
    (perms,) = await client.call(ROOT, MANAGER_IFACE, "GetPermissions")
    if args.json:
        emit_json(perms)
    else:
        for action, answer in sorted(perms.items()):
            print(f"{action.rsplit('.', 1)[-1]:<10} {answer}")
    return EXIT_OK


# ---- acting ----------------------------------------------------------------------------------


class Progress:
    """A one-line progress display on stderr while a refresh runs (terminals only)."""

    def __init__(self, client: Client, snap: Snapshot, what: str, devices: Sequence[str]) -> None:
        self.client, self.snap, self.what = client, snap, what
        self.devices = list(devices)
        self.states = {p: snap.devices[p].get("State", 0) for p in self.devices}
        self.started = time.monotonic()
        self.ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.add_match(
            f"type='signal',sender='{BUS_NAME}',member='PropertiesChanged',arg0='{DEVICE_IFACE}'"
        )
        self.client.bus.add_message_handler(self.on_message)
        self.ticker = asyncio.ensure_future(self.tick())

    def on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.path in self.states:
            changed = unpack_variants(msg.body[1])
            if "State" in changed:
                self.states[msg.path] = changed["State"]

    def line(self) -> str:
        parts = [
            f"{self.snap.device_name(p)} {state_name(DeviceState, s)}"
            for p, s in self.states.items()
        ]
        elapsed = time.monotonic() - self.started
        return f"refreshing {self.what}: {', '.join(parts) or '…'} ({elapsed:.1f} s)"

    async def tick(self) -> None:
        while True:
            sys.stderr.write("\r\033[K" + self.line())
            sys.stderr.flush()
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        self.client.bus.remove_message_handler(self.on_message)
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


class Completion:
    """Collects RefreshCompleted from some devices; subscribed before the call, so a cycle
    that ends right after the daemon's own wait ran out is not missed."""

    def __init__(self, client: Client, devices: Sequence[str]) -> None:
        self.client, self.devices = client, list(devices)
        self.done: dict[str, tuple[bool, str]] = {}
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        await self.client.add_match(
            f"type='signal',sender='{BUS_NAME}',interface='{DEVICE_IFACE}',"
            "member='RefreshCompleted'"
        )
        self.client.bus.add_message_handler(self.on_message)

    def on_message(self, msg: Message) -> None:
        if (
            msg.message_type is MessageType.SIGNAL
            and msg.member == "RefreshCompleted"
            and msg.path in self.devices
        ):
            self.done[msg.path] = (bool(msg.body[0]), str(msg.body[1]))
            self.arrived.set()

    async def wait(self, deadline: float) -> list[tuple[bool, str]]:
        """Every device's outcome; TimeoutError at ``deadline`` (monotonic)."""
        while len(self.done) < len(self.devices):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), max(deadline - time.monotonic(), 0))
        return [self.done[d] for d in self.devices]

    def stop(self) -> None:
        self.client.bus.remove_message_handler(self.on_message)


async def cmd_refresh(client: Client, args: argparse.Namespace) -> int:
    snap = await snapshot(client)
    path, interface, what = ROOT, MANAGER_IFACE, "all interfaces"
    devices = [p for p, _ in snap.sorted_devices()]
    if args.target:
        path, interface, what = resolve_target(snap, args.target)
        devices = [path] if interface == DEVICE_IFACE else [snap.peers[path].get("Device", "")]
    if not args.wait:
        await client.call(path, interface, "Refresh", "a{sv}", [{}], action=True)
        report(args, f"refresh of {what} requested", {"target": what, "waited": False})
        return EXIT_OK
    deadline = time.monotonic() + args.timeout if args.timeout else None
    completion = Completion(client, devices) if deadline is not None else None
    progress = None
    if sys.stderr.isatty() and not args.quiet and not args.json:
        progress = Progress(client, snap, what, devices)
    try:
        for watcher in (completion, progress):
            if watcher is not None:
                await watcher.start()
        try:
            await client.call(
                path,
                interface,
                "Refresh",
                "a{sv}",
                [{"wait": Variant("b", True)}],
                action=True,
                timeout=args.timeout,
            )
        except CtlError as exc:
            if exc.error_name != Error.TIMEOUT or completion is None or deadline is None:
                raise
            # the daemon bounds its own wait; the caller asked to wait longer
            results = await completion.wait(deadline)
            failed = [err or "failed" for ok, err in results if not ok]
            if failed:
                raise CtlError(f"refresh of {what} failed: {'; '.join(failed)}") from None
    except (TimeoutError, NoAnswer) as exc:
        if args.timeout is None:
            raise
        raise CtlError(
            f"refresh of {what}: no result within {args.timeout:g} s; it goes on in the "
            "daemon (`stunmeshctl show` tells how it ends)",
            EXIT_FAILURE,
        ) from exc
    finally:
        for watcher in (completion, progress):
            if watcher is not None:
                watcher.stop()
    report(args, f"refreshed {what}", {"target": what, "waited": True})
    return EXIT_OK


def report(args: argparse.Namespace, text: str, data: dict[str, Any]) -> None:
    if args.json:
        emit_json(data)
    elif not args.quiet:
        print(text)


async def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    await client.call(ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{}], action=True)
    report(args, "configuration reloaded", {"reloaded": True})
    return EXIT_OK


async def cmd_log_level(client: Client, args: argparse.Namespace) -> int:
    if args.level is None:
        manager = await client.manager()
        if "LogLevel" not in manager:
            raise CtlError("this stunmeshd does not report its log level (it is older)")
        level = str(manager["LogLevel"])
        if args.json:
            emit_json({"log_level": level})
        else:
            print(level)
        return EXIT_OK
    await client.call(ROOT, MANAGER_IFACE, "SetLogLevel", "s", [args.level], action=True)
    report(args, f"log level set to {args.level}", {"log_level": args.level})
    return EXIT_OK


async def cmd_complete(client: Client, args: argparse.Namespace) -> int:
    """Names for shell completion, one per line (a hidden command the completions call)."""
    snap = await snapshot(client)
    names = [snap.device_name(p) for p, _ in snap.sorted_devices()]
    if args.what == "targets":
        peers = [snap.peer_name(p) for p, _ in snap.peer_rows()]
        short = [p.split("/", 1)[1] for p in peers]
        names += peers + sorted({n for n in short if short.count(n) == 1})
    print("\n".join(names))
    return EXIT_OK


async def cmd_monitor(client: Client, args: argparse.Namespace) -> int:
    from stunmeshd.ctl.monitor import watch

    await watch(client, as_json=args.json)
    return EXIT_OK


# ---- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of text",
    )
    parser = argparse.ArgumentParser(
        prog="stunmeshctl",
        description="Query and control stunmeshd, the peer-to-peer WireGuard NAT traversal "
        "daemon, over D-Bus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stunmeshctl {__version__}")
    parser.add_argument(
        "--bus",
        default="system",
        metavar="system|session|ADDRESS",
        help="the bus the daemon is on (default: system)",
    )
    parser.add_argument(
        "--json", action="store_true", default=False, help="print JSON instead of text"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.add_argument(
        "--no-ask-password",
        action="store_true",
        help="never let polkit ask for a password; fail with status 4 instead (by default, "
        "on a terminal without a polkit agent, refresh, reload and log-level LEVEL start "
        "pkttyagent, which asks for an administrator's password there)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "status", parents=[common], help="the daemon and its interfaces in short (the default)"
    )
    sub.add_parser("devices", parents=[common], help="managed WireGuard interfaces, a table")
    peers = sub.add_parser("peers", parents=[common], help="peers (of one interface), a table")
    peers.add_argument("interface", nargs="?", metavar="IFACE", help="only this interface")
    show = sub.add_parser(
        "show",
        parents=[common],
        help="everything known about interfaces and peers, or one of them",
        description="Everything stunmeshd knows about every interface and its peers, or about "
        "one interface (IFACE) or one peer (its name, public key, or IFACE/NAME): full keys, "
        "next refresh, fwmark, backend, the whole last error, NAT behaviour.",
    )
    show.add_argument("target", nargs="?", metavar="IFACE|PEER")
    refresh = sub.add_parser(
        "refresh",
        parents=[common],
        help="rediscover, republish and re-fetch now",
        description="Refresh everything, one interface (IFACE), or one peer (its name, "
        "public key, or IFACE/NAME).",
    )
    refresh.add_argument("target", nargs="?", metavar="IFACE|PEER")
    refresh.add_argument(
        "--wait",
        action="store_true",
        help="return when the cycle has ended, failing if it failed (progress on a terminal)",
    )
    refresh.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="with --wait: give up after S seconds (default: the daemon's bound, 20 s)",
    )
    sub.add_parser("reload", parents=[common], help="re-read the configuration file")
    level = sub.add_parser(
        "log-level",
        parents=[common],
        help="show or change the daemon's log level",
        description="Without LEVEL, print the daemon's current log level; with it, change it.",
    )
    level.add_argument("level", nargs="?", choices=LOG_LEVELS, metavar="LEVEL")
    sub.add_parser("permissions", parents=[common], help="what you may do (polkit)")
    sub.add_parser("monitor", parents=[common], help="print changes as they happen")
    netcheck = sub.add_parser(
        "netcheck",
        parents=[common],
        help="probe this network: NAT behaviour, port mapping, IPv6, latency (no daemon needed)",
        description="Measure what this network lets stunmeshd do, without the daemon: per STUN "
        "server and family the round trip and mapped address, the NAT's mapping and filtering "
        "behaviour (RFC 5780), whether the mapping is the same towards every server, which "
        "port-mapping protocols (PCP, NAT-PMP, UPnP IGD) the default gateway offers (asked "
        "only, nothing is mapped), IPv6, and a one-line verdict. Servers: --server, else the "
        "running daemon's, else the configuration file's.",
    )
    netcheck.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a STUN server to probe (repeat for more)",
    )
    netcheck.add_argument(
        "-c", "--config", metavar="FILE", help="take the STUN servers from this configuration"
    )
    netcheck.add_argument(
        "--family", choices=["ipv4", "ipv6", "both"], default="both", help="what to probe"
    )
    netcheck.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="probe from this UDP port through a raw socket, as the daemon does from "
        "WireGuard's (needs root)",
    )
    complete = sub.add_parser(COMPLETE)  # no help: hidden from --help and the man page
    complete.add_argument("what", choices=["interfaces", "targets"])
    return parser


COMPLETE = "_complete"  # the hidden command shell completions call for names


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and less than a day")
    return value


COMMANDS = {
    "status": cmd_status,
    "devices": cmd_devices,
    "peers": cmd_peers,
    "show": cmd_show,
    "refresh": cmd_refresh,
    "reload": cmd_reload,
    "log-level": cmd_log_level,
    "permissions": cmd_permissions,
    "monitor": cmd_monitor,
    COMPLETE: cmd_complete,
}


async def cmd_netcheck(args: argparse.Namespace) -> int:
    """Standalone: no daemon, no bus needed (see netcheck.py for why)."""
    from stunmeshd.ctl import netcheck
    from stunmeshd.errors import ConfigError

    if args.port is not None and not 0 < args.port < 65536:
        raise CtlError(f"--port {args.port}: not a UDP port", EXIT_USAGE)
    try:
        servers, origin = await netcheck.choose_servers(args.server, args.bus, args.config)
    except ConfigError as exc:
        raise CtlError(f"netcheck: {exc}", EXIT_USAGE) from None
    families = ("ipv4", "ipv6") if args.family == "both" else (args.family,)
    report = await netcheck.run_netcheck(
        servers, servers_from=origin, families=families, port=args.port
    )
    if args.json:
        emit_json(report.to_json())
    else:
        print(netcheck.render(report))
    reachable = any(f.reachable for f in report.families.values())
    return EXIT_OK if reachable else EXIT_FAILURE


async def run(args: argparse.Namespace) -> int:
    if args.command == "netcheck":
        return await cmd_netcheck(args)
    client = await Client.connect(args.bus, interactive=not args.no_ask_password)
    try:
        return await COMMANDS[args.command](client, args)
    finally:
        client.close()
        await client.stop_agent()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "refresh" and args.timeout and not args.wait:
            parser.error("--timeout goes with --wait")
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


__all__ = ["build_parser", "main", "resolve_target"]
