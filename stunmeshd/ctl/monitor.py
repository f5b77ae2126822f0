"""``stunmeshctl monitor``: one line per signal of the daemon, with names instead of paths.

A daemon exports its objects before it owns its name, so a monitor started before the daemon
(or across a restart) cannot see those first ``InterfacesAdded``/``DeviceAdded``/``PeerAdded``:
the bus only routes signals by a well-known sender once the name is owned. So the monitor also
watches ``NameOwnerChanged``; when the daemon appears it reads the managed objects and announces
every device and peer it has not announced yet, by name — the same lines it would have printed.
Messages are handled in arrival order by one task, so those reads never reorder the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from dbus_fast import Message, MessageType, unpack_variants

from stunmeshd.bus.names import (
    BUS_NAME,
    DBUS_NAME,
    DEVICE_IFACE,
    PEER_IFACE,
    ROOT,
)
from stunmeshd.ctl.client import EXIT_NOT_RUNNING, Client, CtlError
from stunmeshd.ctl.view import (
    STATE_ENUMS,
    TIME_PROPS,
    rfc3339,
    rfc3339_now,
    state_name,
)


class Monitor:
    """Follows the daemon's signals; ``out`` gets one line (text or JSON) per event."""

    def __init__(
        self, client: Client, *, as_json: bool, out: Callable[[str], None] = print
    ) -> None:
        self.client = client
        self.as_json = as_json
        self.out = out
        self.names: dict[str, str] = {}  # object path -> "wg0" / "wg0/office"
        self.announced: set[str] = set()  # paths whose Added line was printed (or pre-existed)
        self.queue: asyncio.Queue[Message] = asyncio.Queue()

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
        with contextlib.suppress(CtlError):  # not running yet: the owner change will tell
            await self.read_objects(announce=False)
        worker = asyncio.ensure_future(self.work())
        disconnected = asyncio.ensure_future(self.client.bus.wait_for_disconnect())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([disconnected, stopped, worker], return_when=asyncio.FIRST_COMPLETED)
        for fut in (disconnected, stopped, worker):
            fut.cancel()
        if worker.done() and not worker.cancelled() and worker.exception():
            raise worker.exception()  # type: ignore[misc]
        if disconnected.done() and not disconnected.cancelled():
            raise CtlError("the bus connection was lost", EXIT_NOT_RUNNING)

    def on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL:
            self.queue.put_nowait(msg)

    async def work(self) -> None:
        while True:
            msg = await self.queue.get()
            try:
                for event in await self.events(msg):
                    self.emit(event)
            except CtlError:
                raise
            except Exception as exc:  # a malformed signal must not end the monitor
                self.emit({"object": msg.path, "signal": msg.member, "text": f"({exc})"})

    async def read_objects(self, *, announce: bool) -> list[dict[str, Any]]:
        """Learn every object's name; with ``announce``, Added events for the new ones."""
        objects = await self.client.objects()
        for path, interfaces in sorted(objects.items()):  # devices sort before peers
            if DEVICE_IFACE in interfaces:
                self.learn(path, interfaces)
        for path, interfaces in sorted(objects.items()):
            if PEER_IFACE in interfaces:
                self.learn(path, interfaces)
        events = []
        for iface, signal, owner in (
            (DEVICE_IFACE, "DeviceAdded", None),
            (PEER_IFACE, "PeerAdded", "Device"),
        ):
            for path, interfaces in sorted(objects.items(), key=lambda kv: self.label(kv[0])):
                if iface not in interfaces or path in self.announced:
                    continue
                self.announced.add(path)
                if announce:
                    source = str(interfaces[iface].get(owner, ROOT)) if owner else ROOT
                    events.append(self.added(signal, source, path))
        return events

    def added(self, signal: str, source: str, path: str) -> dict[str, Any]:
        return {
            "object": self.label(source),
            "signal": signal,
            "text": self.label(path),
            "name": self.label(path),
            "object_path": path,
        }

    def emit(self, event: dict[str, Any]) -> None:
        if self.as_json:
            self.out(json.dumps({"time": rfc3339_now(), **event}, sort_keys=True, default=str))
            return
        stamp = rfc3339_now()
        detail = event.get("text", "")
        self.out(f"{stamp} {event['object']}: {event['signal']}{' ' if detail else ''}{detail}")

    async def events(self, msg: Message) -> list[dict[str, Any]]:
        body = unpack_variants(list(msg.body))
        member = msg.member or ""
        if member == "NameOwnerChanged":
            if not body[2]:
                self.names.clear()
                self.announced.clear()
                return [{"object": "daemon", "signal": "stopped", "text": "", "owner": ""}]
            started = {"object": "daemon", "signal": "started", "text": "", "owner": body[2]}
            try:
                return [started, *await self.read_objects(announce=True)]
            except CtlError:  # gone again already
                return [started]
        path = msg.path or ""
        event: dict[str, Any] = {"object": self.label(path), "signal": member, "object_path": path}
        if member == "PropertiesChanged":
            interface, changed = body[0], body[1]
            event["changes"] = {k: self.json_value(interface, k, v) for k, v in changed.items()}
            event["text"] = " ".join(
                f"{k}={self.show(interface, k, v)}" for k, v in sorted(changed.items())
            )
        elif member == "InterfacesAdded":
            self.learn(body[0], body[1])
            event.update(object=self.label(body[0]), signal="added", text="", object_path=body[0])
        elif member == "InterfacesRemoved":
            event.update(object=self.label(body[0]), signal="removed", text="", object_path=body[0])
        elif member in ("DeviceAdded", "PeerAdded"):
            added = str(body[0])
            if added in self.announced:
                return []  # already announced when the daemon appeared
            if added not in self.names:
                with contextlib.suppress(CtlError):
                    iface = DEVICE_IFACE if member == "DeviceAdded" else PEER_IFACE
                    self.learn(added, {iface: await self.client.get_all(added, iface)})
            self.announced.add(added)
            return [self.added(member, path, added)]
        elif member in ("DeviceRemoved", "PeerRemoved"):
            removed = str(body[0])
            self.announced.discard(removed)
            event.update(text=self.label(removed), name=self.label(removed))
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
        return [event]

    def json_value(self, interface: str, key: str, value: Any) -> Any:
        if key == "State" and interface in STATE_ENUMS:
            return state_name(STATE_ENUMS[interface], value)
        if key in TIME_PROPS:
            return rfc3339(value)
        if isinstance(value, str) and value.startswith(ROOT + "/"):
            return self.label(value)
        if isinstance(value, list):
            return [self.label(v) if str(v).startswith(ROOT + "/") else v for v in value]
        return value

    def show(self, interface: str, key: str, value: Any) -> str:
        shown = self.json_value(interface, key, value)
        if isinstance(shown, list):
            return ",".join(str(v) for v in shown) or "[]"
        if shown is None:
            return "never"
        if isinstance(shown, str):
            return json.dumps(shown) if (not shown or " " in shown) else shown
        return str(shown)


async def watch(client: Client, *, as_json: bool) -> None:
    """Run until SIGINT/SIGTERM (or the bus goes away)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Monitor(client, as_json=as_json, out=lambda line: print(line, flush=True)).run(stop)


__all__ = ["Monitor", "watch"]
