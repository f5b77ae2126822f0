"""The bus connection: which bus, the well-known name, and dbus-fast's ObjectManager fix.

dbus-fast sends ``InterfacesAdded``/``InterfacesRemoved`` from the exported object's own path;
the spec (and GLib's ``GDBusObjectManagerClient``, which ignores anything else) wants them from
the ObjectManager's path. ``StunMeshBus`` overrides the two private hooks that emit them
(hence the ``dbus-fast>=5,<6`` pin; tests/bus keeps a Gio client as the regression test).
"""

from __future__ import annotations

import array
import logging
import socket
from typing import Any

from dbus_fast import Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.aio.message_bus import _MessageWriter
from dbus_fast.service import ServiceInterface

from stunmeshd.bus.address import bus_kwargs
from stunmeshd.bus.bounded import bounded_error_text
from stunmeshd.bus.names import BUS_NAME, OBJECT_MANAGER_IFACE, ROOT
from stunmeshd.errors import StunmeshError

log = logging.getLogger(__name__)


class BusError(StunmeshError):
    """The bus cannot be reached, or the name cannot be owned: the daemon must exit."""


class BusUnreachable(BusError):
    """There is no bus at that address (or it refused us)."""


class ValuesProvider:
    """Mix-in for our interfaces: all property values at once, already wrapped in Variants.

    Faster than dbus-fast's per-property callbacks, and it never raises.
    """

    def dbus_values(self) -> dict[str, Variant]:
        raise NotImplementedError


class _RobustWriter(_MessageWriter):
    """dbus-fast's writer, except that a full socket buffer (EAGAIN) means "wait until
    writable", not "connection lost".

    Upstream treats ``BlockingIOError`` from ``sock.send`` as fatal and drops the connection
    (python-dbus-next issue #153, inherited by dbus-fast): a burst of signals bigger than the
    socket buffer (a thousand peers changing at once) would take the daemon off the bus.
    """

    def write_callback(self, remove_writer: bool = True) -> None:
        sock = self.sock
        try:
            while True:
                if self.buf is None:
                    if not self.messages:
                        if remove_writer:
                            self.loop.remove_writer(self.fd)
                        return
                    buf, unix_fds, fut = self.messages.popleft()
                    self.unix_fds = unix_fds
                    self.buf = memoryview(buf)
                    self.offset = 0
                    self.fut = fut
                try:
                    if self.unix_fds and self.negotiate_unix_fd:
                        ancdata = [
                            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))
                        ]
                        self.offset += sock.sendmsg([self.buf[self.offset :]], ancdata)
                        self.unix_fds = None
                    else:
                        self.offset += sock.send(self.buf[self.offset :])
                except (BlockingIOError, InterruptedError):
                    self.loop.add_writer(self.fd, self.write_callback)
                    return
                if self.offset < len(self.buf):
                    self.loop.add_writer(self.fd, self.write_callback)
                    return
                self.buf = None
                if self.fut is not None and not self.fut.done():
                    self.fut.set_result(None)
        except Exception as exc:
            if self.fut is not None and not self.fut.done():
                if self.bus._user_disconnect:
                    self.fut.set_result(None)
                else:
                    self.fut.set_exception(exc)
            self.bus._finalize(exc)


class StunMeshBus(MessageBus):
    """A MessageBus whose ObjectManager signals come from ROOT, as GLib clients require,
    and which survives a full socket buffer."""

    manager_path = ROOT
    announce = True  # False while the initial tree is exported, before the name is owned

    async def connect(self) -> StunMeshBus:
        await super().connect()
        if type(self._writer) is _MessageWriter:
            self._writer.__class__ = _RobustWriter
        return self

    def send(self, msg: Message) -> Any:
        """Send ``msg``; an error reply's text first passes ``bounded_error_text`` (the net
        under every error, dbus-fast's own included: none may grow with the request)."""
        if msg.message_type is MessageType.ERROR and msg.signature == "s" and msg.body:
            text = msg.body[0]
            safe = bounded_error_text(text) if isinstance(text, str) else ""
            if safe != text:
                msg = Message(
                    message_type=MessageType.ERROR,
                    error_name=msg.error_name,
                    reply_serial=msg.reply_serial,
                    destination=msg.destination,
                    signature="s",
                    body=[safe],
                )
        return super().send(msg)

    def _managed(self, path: str) -> bool:
        return path.startswith(self.manager_path + "/")

    def _emit_interface_added(self, path: str, interface: ServiceInterface) -> None:
        if self._disconnected or not self.announce or not self._managed(path):
            return
        if isinstance(interface, ValuesProvider):
            self._send_interfaces_added(path, interface, interface.dbus_values())
            return

        def done(iface: ServiceInterface, values: Any, _user: Any, err: Exception | None) -> None:
            if err is not None:
                log.error("InterfacesAdded: property values incomplete path=%s", path)
            self._send_interfaces_added(path, iface, values)

        ServiceInterface._get_all_property_values(interface, done)

    def _send_interfaces_added(
        self, path: str, interface: ServiceInterface, values: dict[str, Variant]
    ) -> None:
        self.send(
            Message.new_signal(
                path=self.manager_path,
                interface=OBJECT_MANAGER_IFACE,
                member="InterfacesAdded",
                signature="oa{sa{sv}}",
                body=[path, {interface.name: values}],
            )
        )

    def _emit_interface_removed(self, path: str, removed_interfaces: list[str]) -> None:
        if self._disconnected or not self.announce or not self._managed(path):
            return
        self.send(
            Message.new_signal(
                path=self.manager_path,
                interface=OBJECT_MANAGER_IFACE,
                member="InterfacesRemoved",
                signature="oas",
                body=[path, removed_interfaces],
            )
        )

    def emit(self, path: str, interface: str, member: str, signature: str, body: list[Any]) -> None:
        """Send a signal from ``path`` (dbus-fast's own emission scans every export per signal,
        which is quadratic with a thousand peers changing at once)."""
        if self._disconnected or not self.announce:
            return
        self.send(
            Message.new_signal(
                path=path, interface=interface, member=member, signature=signature, body=body
            )
        )


async def connect(address: str, bus_class: type[MessageBus] = StunMeshBus) -> Any:
    """Connect to ``address``; BusError with a one-line reason when that fails."""
    try:
        return await bus_class(**bus_kwargs(address)).connect()
    except Exception as exc:  # FileNotFoundError, auth failure, bad address ...
        raise BusUnreachable(f"cannot connect to the {_describe(address)}: {exc}") from exc


async def claim_name(bus: MessageBus, name: str = BUS_NAME) -> None:
    """Own ``name`` or raise BusError: a second daemon must not queue behind the first."""
    try:
        reply = await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
    except Exception as exc:  # AccessDenied by the bus policy: not root, or no policy file
        raise BusError(f"cannot own the bus name {name}: {exc}") from exc
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        raise BusError(
            f"cannot own the bus name {name}: another process owns it "
            "(is stunmeshd already running?)"
        )


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def read_machine_id() -> str:
    """This machine's D-Bus machine id (32 hex digits), as libdbus and sd-bus read it; ""
    when there is none (blocking: call it in a thread)."""
    for path in MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii") as file:
                text = file.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
            return text
    return ""


def _describe(address: str) -> str:
    return f"{address} bus" if address in ("system", "session") else f"bus at {address}"
