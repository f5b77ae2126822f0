"""stunmeshctl's bus connection: the calls it makes, and every failure as one line that says
what to do, with the exit status scripts rely on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, unpack_variants
from dbus_fast.aio import MessageBus

from stunmeshd.bus.address import bus_kwargs
from stunmeshd.bus.names import (
    ACTION_CONFIGURE,
    ACTION_REFRESH,
    ACTION_RELOAD,
    BUS_NAME,
    DBUS_NAME,
    DBUS_PATH,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
)
from stunmeshd.ctl import agent

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_NOT_AUTHORIZED = 4
EXIT_NO_SUCH = 5

EXIT_STATUS_HELP = """\
exit status:
  0  success
  1  failure (the daemon answered with an error, e.g. a refresh with --wait failed)
  2  usage error (bad command line or argument)
  3  stunmeshd is not running, or the bus cannot be reached (the message says which)
  4  not authorized (polkit said no; run as root or see the polkit rules)
  5  no such interface or peer (not managed by stunmeshd)
"""

CALL_TIMEOUT = 25.0  # s, the usual D-Bus client timeout
INTERACTIVE_TIMEOUT = 120.0  # s: a polkit agent may be asking for a password
SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket"

# what each guarded method needs, for "not authorized" messages
METHOD_ACTIONS = {
    "Refresh": ACTION_REFRESH,
    "Reload": ACTION_RELOAD,
    "SetLogLevel": ACTION_CONFIGURE,
}
RULES_EXAMPLE = "/usr/share/doc/stunmeshd/50-stunmeshd-group.rules.example"


class CtlError(Exception):
    """A failure to report on one line, with the exit status it means."""

    def __init__(self, message: str, status: int = EXIT_FAILURE, error_name: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_name = error_name  # the D-Bus error behind it, if any


class NoAnswer(CtlError):
    """The daemon did not answer within the time allowed (it may still be working)."""


def bus_description(address: str) -> str:
    """Which bus ``--bus`` names, as a person would say it (with the address it resolves to)."""
    if address == "system":
        real = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS_DEFAULT)
        return f"the system bus ({real})"
    if address == "session":
        return "the session bus"
    return f"the bus at {address}"


class Client:
    """One bus connection and the calls stunmeshctl makes."""

    def __init__(self, bus: MessageBus, *, address: str = "system", interactive: bool = True):
        self.bus = bus
        self.address = address
        self.interactive = interactive
        # on a terminal without a polkit agent, one for this process (stunmeshd.ctl.agent)
        self.agent = agent.TtyAgent() if interactive and agent.wanted() else None

    @classmethod
    async def connect(cls, address: str, *, interactive: bool = True) -> Client:
        try:
            bus = await asyncio.wait_for(MessageBus(**bus_kwargs(address)).connect(), CALL_TIMEOUT)
        except Exception as exc:
            # No bus at all is a different problem from a bus without stunmeshd on it.
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise CtlError(
                f"cannot connect to {bus_description(address)}: {reason}. "
                "Is D-Bus running here? (--bus or DBUS_SYSTEM_BUS_ADDRESS choose another bus)",
                EXIT_NOT_RUNNING,
            ) from None
        return cls(bus, address=address, interactive=interactive)

    def close(self) -> None:
        self.bus.disconnect()

    async def stop_agent(self) -> None:
        if self.agent is not None:
            await self.agent.stop()

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
        timeout: float | None = None,
    ) -> list[Any]:
        """Call a method; errors become CtlError with the right exit status."""
        flags = MessageFlag.NONE
        limit = CALL_TIMEOUT
        if action and self.interactive:
            flags = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION
            limit = INTERACTIVE_TIMEOUT
            if self.agent is not None:
                await self.agent.start()
        if timeout is not None:
            limit = timeout
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
            async with asyncio.timeout(limit):
                reply = await self.bus.call(msg)
        except TimeoutError:
            raise NoAnswer(f"{member}: no answer within {limit:g} s") from None
        except (OSError, EOFError) as exc:
            raise CtlError(f"the bus connection failed: {exc}", EXIT_NOT_RUNNING) from None
        if reply is None:
            raise CtlError(f"{member}: no answer")
        if reply.message_type is MessageType.ERROR:
            raise error_from_reply(reply.error_name or "", reply.body, member, self.address)
        return list(reply.body)

    async def get_all(self, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self.call(path, PROPERTIES_IFACE, "GetAll", "s", [interface])
        return dict(unpack_variants(props))

    async def objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        (objects,) = await self.call(ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects")
        return dict(unpack_variants(objects))

    async def manager(self) -> dict[str, Any]:
        return await self.get_all(ROOT, MANAGER_IFACE)

    async def add_match(self, rule: str) -> None:
        await self.call(DBUS_PATH, DBUS_NAME, "AddMatch", "s", [rule], destination=DBUS_NAME)


def error_from_reply(name: str, body: Sequence[Any], member: str, address: str) -> CtlError:
    text = str(body[0]) if body and isinstance(body[0], str) else ""
    if name in (Error.SERVICE_UNKNOWN, Error.NAME_HAS_NO_OWNER):
        return CtlError(
            f"stunmeshd is not running: nobody owns {BUS_NAME} on {bus_description(address)}. "
            "Start it with `systemctl start stunmeshd` (or check --bus)",
            EXIT_NOT_RUNNING,
        )
    if name in (Error.NO_SUCH_UNIT, Error.UNIT_MASKED):
        return CtlError(
            f"stunmeshd is not running and the bus may not start it ({text or name}); "
            "enable it: systemctl enable --now stunmeshd",
            EXIT_NOT_RUNNING,
        )
    if name in (Error.ACCESS_DENIED, Error.INTERACTIVE_AUTHORIZATION_REQUIRED):
        return not_authorized(member, name == Error.INTERACTIVE_AUTHORIZATION_REQUIRED)
    if name in (Error.NO_SUCH_DEVICE, Error.NO_SUCH_PEER):
        return CtlError(f"{member}: {text or 'not managed by stunmeshd'}", EXIT_NO_SUCH)
    if name == Error.INVALID_ARGS:
        return CtlError(f"{member}: {text or 'invalid arguments'}", EXIT_USAGE)
    short = name.rsplit(".", 1)[-1]
    return CtlError(f"{member} failed ({short}): {text or name}", error_name=name)


def not_authorized(member: str, needs_password: bool) -> CtlError:
    """One message: what was refused, which polkit action, and the ways to be allowed."""
    action = METHOD_ACTIONS.get(member)
    what = f"polkit action {action}" if action else "permission"
    how = "without a password prompt (drop --no-ask-password to be asked)" if needs_password else ""
    remedy = "run it as root (sudo)"
    if action == ACTION_REFRESH:
        remedy += f", or let an administrator install the group rule in {RULES_EXAMPLE}"
    else:
        remedy += ", or have an administrator grant it with a polkit rule"
    return CtlError(
        f"{member} needs the {what}, which you do not have{' ' + how if how else ''}: {remedy}. "
        "`stunmeshctl permissions` shows what you may do",
        EXIT_NOT_AUTHORIZED,
    )
