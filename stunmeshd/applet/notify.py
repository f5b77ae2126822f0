"""Desktop notifications (``org.freedesktop.Notifications``) when a peer connects or fails.

A peer is known by its interface and public key, not its object path, so a daemon restart
(new paths, peers passing through "waiting" again) does not announce peers that never went
away. Only the step between "connected" and "failed" (or a first "connected") is news.

Rate limit, per peer: ``burst`` notifications, then one per ``interval``; a peer that flaps
meanwhile gets one trailing notification with its state at the end of the quiet time, if that
differs from the last one shown. Each peer's notification replaces its previous one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from stunmeshd.applet.mirror import Tree
from stunmeshd.bus.names import Error
from stunmeshd.bus.ratelimit import RateLimiter
from stunmeshd.model import PeerState

log = logging.getLogger(__name__)

NOTIFY_NAME = "org.freedesktop.Notifications"
NOTIFY_PATH = "/org/freedesktop/Notifications"
APP_NAME = "stunmeshd"
NEWS = {PeerState.CONNECTED: "connected", PeerState.FAILED: "failed"}


@dataclass(frozen=True)
class Notice:
    key: str  # interface/public key
    summary: str
    body: str
    icon: str
    urgency: int  # 0 low, 1 normal, 2 critical


def peer_key(tree: Tree, props: dict[str, Any]) -> str:
    device = tree.devices.get(str(props.get("Device", "")), {})
    return f"{device.get('Interface', '?')}/{props.get('PublicKey', '')}"


def notice_for(tree: Tree, props: dict[str, Any], key: str) -> Notice:
    name = str(props.get("Name") or "a peer")
    interface = key.split("/", 1)[0]
    if props.get("State") == PeerState.FAILED:
        why = str(props.get("LastError") or "no reason given")
        return Notice(key, f"{name} failed", f"{interface}: {why}", "network-error", 2)
    endpoint = str(props.get("Endpoint") or "")
    return Notice(key, f"{name} connected", f"{interface}: {endpoint}", "network-vpn", 1)


class PeerNews:
    """Turns tree changes into rate-limited notices; ``send`` shows one."""

    def __init__(
        self,
        send: Callable[[Notice], None],
        *,
        burst: int = 2,
        interval: float = 300.0,
        limiter: RateLimiter | None = None,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        self.send = send
        if limiter is None:  # (not `or`: an empty RateLimiter is falsy)
            limiter = RateLimiter(rate=1.0 / interval, burst=burst)
        self.limiter = limiter
        self.call_later = call_later or (lambda d, f: asyncio.get_running_loop().call_later(d, f))
        self.seen: dict[str, PeerState] = {}  # key -> last connected/failed state seen
        self.shown: dict[str, PeerState] = {}  # key -> state of the last notice shown
        self.latest: dict[str, Notice] = {}  # key -> notice for the current state
        self.trailing: set[str] = set()  # keys with a trailing notice scheduled

    def observe(self, tree: Tree, *, quiet: bool = False) -> None:
        """Compare the tree's peers with what was seen; ``quiet`` learns without notifying."""
        for props in tree.peers.values():
            state = props.get("State")
            if state not in NEWS:
                continue
            key = peer_key(tree, props)
            state = PeerState(state)
            if self.seen.get(key) == state:
                continue
            self.seen[key] = state
            self.latest[key] = notice_for(tree, props, key)
            if quiet:
                self.shown[key] = state
            else:
                self._offer(key)

    def _offer(self, key: str) -> None:
        if key in self.trailing:
            return  # the trailing notice will show the newest state
        if self.limiter.allow(key):
            self._show(key)
        else:
            self.trailing.add(key)
            self.call_later(self.limiter.retry_after(key), lambda: self._flush(key))

    def _flush(self, key: str) -> None:
        self.trailing.discard(key)
        if self.shown.get(key) != self.seen.get(key):
            self.limiter.allow(key)
            self._show(key)

    def _show(self, key: str) -> None:
        self.shown[key] = self.seen[key]
        self.send(self.latest[key])


class Notifications:
    """Sends notices to the desktop's notification server; each peer's replaces its last."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.ids: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, notice: Notice) -> None:
        msg = Message(
            destination=NOTIFY_NAME,
            path=NOTIFY_PATH,
            interface=NOTIFY_NAME,
            member="Notify",
            signature="susssasa{sv}i",
            body=[
                APP_NAME,
                self.ids.get(notice.key, 0),
                notice.icon,
                notice.summary,
                notice.body,
                [],
                {"urgency": Variant("y", notice.urgency), "category": Variant("s", "network")},
                -1,
            ],
        )
        task = asyncio.get_running_loop().create_task(self._call(notice.key, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, key: str, msg: Message) -> None:
        reply = await self.bus.call(msg)
        if reply is None or reply.message_type is MessageType.ERROR:
            name = reply.error_name if reply is not None else "no reply"
            if name != Error.SERVICE_UNKNOWN:
                log.warning("the desktop did not take a notification: %s", name)
            return
        self.ids[key] = int(reply.body[0])
