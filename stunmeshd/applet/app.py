"""stunmesh-applet: wires the daemon's mirror (system bus) to the tray item, its menu and the
notifications (session bus), and runs "Refresh" when the user clicks it.

Refresh calls allow interactive authorization: polkit decides, and the desktop's agent asks
for a password when the policy says so. Only a refusal is reported (as a notification); the
outcome of an allowed refresh shows in the menu through the daemon's own signals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus

from stunmeshd.applet import view
from stunmeshd.applet.autostart import set_autostart
from stunmeshd.applet.dbusmenu import MENU_PATH, DBusMenu
from stunmeshd.applet.mirror import DaemonMirror, Tree
from stunmeshd.applet.notify import Notice, Notifications, PeerNews
from stunmeshd.applet.sni import ITEM_PATH, Registration, StatusNotifierItem
from stunmeshd.bus.names import BUS_NAME, Error

log = logging.getLogger("stunmesh-applet")

CONNECT_TIMEOUT = 25.0  # s
INTERACTIVE_TIMEOUT = 120.0  # s: the polkit agent may be asking for a password
REFUSED = (Error.ACCESS_DENIED, Error.INTERACTIVE_AUTHORIZATION_REQUIRED)


class Applet:
    """The tray item, its menu and the notifications, all following one ``DaemonMirror``."""

    def __init__(
        self, system: MessageBus, session: MessageBus, *, burst: int, interval: float
    ) -> None:
        self.system = system
        self.session = session
        self.mirror = DaemonMirror(system, self._changed)
        self.item = StatusNotifierItem()
        self.menu = DBusMenu(self._entries, self._clicked)
        self.registration = Registration(session)
        self.notifications = Notifications(session)
        self.news = PeerNews(self.notifications.send, burst=burst, interval=interval)
        self._started = False  # the first tree seen at start-up is not news
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.session.export(ITEM_PATH, self.item)
        self.session.export(MENU_PATH, self.menu)
        await self.mirror.start()
        if not self.mirror.loading:  # not running: whatever comes later is news
            self._started = True
        self._present(self.mirror.tree)
        await self.registration.start()

    def _entries(self) -> list[view.Entry]:
        return view.entries(self.mirror.tree)

    def _present(self, tree: Tree) -> None:
        self.item.update(view.overall(tree), view.tooltip(tree))
        self.menu.refresh()

    def _changed(self, tree: Tree) -> None:
        self._present(tree)
        if tree.running:
            self.news.observe(tree, quiet=not self._started)
        self._started = True

    # ---- Refresh --------------------------------------------------------------------------

    def _clicked(self, entry: view.Entry) -> None:
        assert entry.target is not None
        task = asyncio.get_running_loop().create_task(self._refresh(entry, *entry.target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, entry: view.Entry, path: str, interface: str) -> None:
        msg = Message(
            destination=BUS_NAME,
            path=path,
            interface=interface,
            member="Refresh",
            signature="a{sv}",
            body=[{}],
            flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION,
        )
        what = entry.label.strip().removeprefix("Refresh ").strip()
        try:
            reply = await asyncio.wait_for(self.system.call(msg), INTERACTIVE_TIMEOUT)
        except TimeoutError:
            log.warning("refresh of %s: no answer", what)
            return
        if reply is None or reply.message_type is not MessageType.ERROR:
            log.info("refresh of %s started", what)
            return
        text = str(reply.body[0]) if reply.body else ""
        log.warning("refresh of %s: %s %s", what, reply.error_name, text)
        if reply.error_name in REFUSED:
            self.notifications.send(
                Notice("refresh", f"Not allowed to refresh {what}", text, "dialog-password", 1)
            )


# ---- command line -------------------------------------------------------------------------


async def connect(address: str) -> MessageBus:
    kwargs: dict[str, Any]
    if address in ("system", "session"):
        kwargs = {"bus_type": BusType.SYSTEM if address == "system" else BusType.SESSION}
    else:
        kwargs = {"bus_address": address}
    return await MessageBus(**kwargs).connect()


async def run(args: argparse.Namespace) -> int:
    try:
        session = await asyncio.wait_for(connect("session"), CONNECT_TIMEOUT)
        system = await asyncio.wait_for(connect(args.bus), CONNECT_TIMEOUT)
    except Exception as exc:
        log.error("cannot connect to the buses: %s", exc)
        return 1
    applet = Applet(system, session, burst=args.notify_burst, interval=args.notify_interval)
    await applet.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    waits = [
        asyncio.ensure_future(stop.wait()),
        asyncio.ensure_future(session.wait_for_disconnect()),
        asyncio.ensure_future(system.wait_for_disconnect()),
    ]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for fut in waits:
        fut.cancel()
    applet.mirror.close()
    for bus in (session, system):
        with contextlib.suppress(Exception):
            bus.disconnect()
    if not stop.is_set():
        log.error("a bus connection was lost")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stunmesh-applet",
        description="stunmeshd in the system tray (StatusNotifierItem): the peers' state, "
        "Refresh, and notifications when a peer connects or fails.",
    )
    parser.add_argument(
        "--bus",
        default="system",
        metavar="system|session|ADDRESS",
        help="the bus stunmeshd is on (default: system)",
    )
    parser.add_argument(
        "--notify-burst",
        type=int,
        default=2,
        metavar="N",
        help="notifications per peer before the rate limit applies (default: 2)",
    )
    parser.add_argument(
        "--notify-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="then at most one per peer per SECONDS (default: 300)",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--autostart",
        choices=["on", "off"],
        help="start the applet with every session of this user (or stop doing so), and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.autostart:
        try:
            print(set_autostart(args.autostart == "on"))
        except OSError as exc:
            print(f"stunmesh-applet: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.notify_burst < 1 or args.notify_interval <= 0:
        print("stunmesh-applet: the rate limit needs N >= 1 and SECONDS > 0", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="stunmesh-applet: %(levelname)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
