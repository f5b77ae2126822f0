"""Who is calling, and may they: caller capture, polkit, per-caller rate limits.

dbus-fast hands methods no caller information, so a message handler (which runs synchronously
for every incoming message, right before dispatch) stores the message in a ContextVar; the
method's task is created in that same context, so ``current_message`` is the right message
inside the method, across awaits, whatever other calls interleave (dbus-fast-notes.md §3).

Which polkit action guards a method, and whether it spends the Refresh budget, is declared
on the method itself (``members.bus_method``), which hands its ``Rule`` to ``authorize``; the
actions GetPermissions reports are the ones those declarations name.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from dbus_fast import DBusError, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from stunmeshd.bus.names import (
    DBUS_NAME,
    DBUS_PATH,
    POLKIT_IFACE,
    POLKIT_NAME,
    POLKIT_PATH,
    Error,
)
from stunmeshd.bus.ratelimit import RateLimiter

log = logging.getLogger(__name__)

current_message: ContextVar[Message | None] = ContextVar("stunmeshd_bus_message", default=None)

POLKIT_TIMEOUT = 10.0  # s for a non-interactive check (polkitd answers in a few ms)
POLKIT_INTERACTIVE_TIMEOUT = 120.0  # s: a human may be typing a password
DBUS_TIMEOUT = 5.0  # s for the bus daemon's own answers
# The Refresh budget (docs/dbus-api.md): per uid, per process for root, whatever connection
REFRESH_RATE = 2.0  # Refresh calls per second per caller, after ...
REFRESH_BURST = 5  # ... this many at once
CALLER_CACHE_SIZE = 4096
ROOT_UID = 0


@dataclass(frozen=True, slots=True)
class Rule:
    """How one exported method is guarded: a polkit action (None = public), whether it
    spends the caller's Refresh budget."""

    action: str | None
    rate_limited: bool = False


PUBLIC = Rule(None)


@dataclass(frozen=True, slots=True)
class Caller:
    """The process behind a bus connection."""

    uid: int
    pid: int

    @property
    def budget_key(self) -> str:
        """Whose rate-limit budget a call spends: a user's, or one root process's."""
        return f"pid:{self.pid}" if self.uid == ROOT_UID else f"uid:{self.uid}"


class Decision(enum.StrEnum):
    """What GetPermissions reports per action."""

    YES = "yes"
    AUTH = "auth"  # allowed after authentication
    NO = "no"


def capture(msg: Message) -> None:
    """Message handler: remember the method call being dispatched (never handles it)."""
    current_message.set(msg if msg.message_type is MessageType.METHOD_CALL else None)


def interactive(msg: Message) -> bool:
    return bool(msg.flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION)


class Authorizer:
    """Answers "may the current caller do this?" with polkit, as NetworkManager does."""

    def __init__(
        self,
        bus: MessageBus,
        *,
        actions: Sequence[str],
        limiter: RateLimiter | None = None,
        on_changed: Callable[[], None] | None = None,
    ) -> None:
        self.bus = bus
        self.actions = tuple(actions)  # what GetPermissions reports on
        self.limiter = limiter or RateLimiter(REFRESH_RATE, REFRESH_BURST)
        self.on_changed = on_changed
        self._callers: OrderedDict[str, Caller] = OrderedDict()

    # ---- set-up ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for polkit's Changed signal (rules or actions changed, a session moved)."""
        self.bus.add_message_handler(self._on_signal)
        rule = (
            f"type='signal',sender='{POLKIT_NAME}',path='{POLKIT_PATH}',"
            f"interface='{POLKIT_IFACE}',member='Changed'"
        )
        reply = await self._ask_bus("AddMatch", rule)
        if reply is None or reply.message_type is MessageType.ERROR:
            log.warning("cannot subscribe to polkit changes; CheckPermissions will not be sent")

    def _on_signal(self, msg: Message) -> None:
        if (
            msg.message_type is MessageType.SIGNAL
            and msg.interface == POLKIT_IFACE
            and msg.member == "Changed"
            and msg.path == POLKIT_PATH
            and self.on_changed is not None
        ):
            self.on_changed()

    # ---- the checks --------------------------------------------------------------------

    async def authorize(self, rule: Rule, member: str, details: Mapping[str, str]) -> None:
        """Raise the D-Bus error the caller of ``member`` (guarded by ``rule``) deserves, or
        return; ``details`` go to polkit (rules may look at them)."""
        msg = current_message.get()
        if msg is None or msg.sender is None:
            log.error("no caller recorded for %s: denied", member)
            raise DBusError(Error.ACCESS_DENIED, "caller unknown")
        sender = msg.sender
        if rule.action is not None:
            await self._require(sender, member, rule.action, details, interactive(msg))
        if rule.rate_limited:
            await self._spend(sender, member)

    async def _require(
        self, sender: str, member: str, action: str, details: Mapping[str, str], ask: bool
    ) -> None:
        """Return when polkit (or root) allows ``action``; raise the right error otherwise."""
        decision = await self.check(sender, action, details, interactive=ask)
        if decision is Decision.YES:
            return
        log.info(
            "denied sender=%s member=%s action=%s decision=%s", sender, member, action, decision
        )
        if decision is Decision.AUTH and not ask:
            raise DBusError(
                Error.INTERACTIVE_AUTHORIZATION_REQUIRED,
                f"{member} needs authentication: {action} (call again allowing "
                "interactive authorization)",
            )
        raise DBusError(Error.ACCESS_DENIED, f"not authorized: {action}")

    async def _spend(self, sender: str, member: str) -> None:
        """One call from the caller's budget: per uid, per process for root (a caller
        reconnecting for every call is still the same caller); LimitsExceeded when empty."""
        caller = await self.caller(sender)
        key = caller.budget_key if caller is not None else f"name:{sender}"
        if not self.limiter.allow(key):
            wait = self.limiter.retry_after(key)
            raise DBusError(
                Error.LIMITS_EXCEEDED,
                f"too many {member} calls; try again in {max(wait, 0.1):.1f} s",
            )

    async def permissions(self) -> dict[str, str]:
        """Action id -> yes/auth/no for the current caller, never prompting."""
        msg = current_message.get()
        if msg is None or msg.sender is None:
            return {action: Decision.NO.value for action in self.actions}
        sender = msg.sender
        decisions = await asyncio.gather(
            *(self.check(sender, action, {}, interactive=False) for action in self.actions)
        )
        return {a: d.value for a, d in zip(self.actions, decisions, strict=True)}

    async def check(
        self, sender: str, action: str, details: Mapping[str, str], *, interactive: bool
    ) -> Decision:
        """polkit's verdict; root is always allowed, and an unreachable polkit means no."""
        caller = await self.caller(sender)
        if caller is None:
            return Decision.NO
        if caller.uid == ROOT_UID:
            return Decision.YES
        reply = await self._call(
            Message(
                destination=POLKIT_NAME,
                path=POLKIT_PATH,
                interface=POLKIT_IFACE,
                member="CheckAuthorization",
                signature="(sa{sv})sa{ss}us",
                body=[
                    ["system-bus-name", {"name": Variant("s", sender)}],
                    action,
                    dict(details),
                    1 if interactive else 0,
                    "",
                ],
            ),
            POLKIT_INTERACTIVE_TIMEOUT if interactive else POLKIT_TIMEOUT,
        )
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            error = reply.error_name if reply is not None else "no answer"
            log.warning("polkit check failed action=%s error=%s: denied", action, error)
            return Decision.NO
        try:
            authorized, challenge, _details = reply.body[0]
        except (IndexError, TypeError, ValueError):
            log.warning("polkit answered oddly action=%s: denied", action)
            return Decision.NO
        if authorized:
            return Decision.YES
        return Decision.AUTH if challenge else Decision.NO

    async def caller(self, sender: str) -> Caller | None:
        """Who is behind a unique bus name, as the bus says (cached: unique names are never
        reused during a bus's life); None when the caller is gone or the bus would not say."""
        known = self._callers.get(sender)
        if known is not None:
            self._callers.move_to_end(sender)
            return known
        reply = await self._ask_bus("GetConnectionCredentials", sender)
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            return None
        try:
            creds = reply.body[0]
            found = Caller(uid=int(creds["UnixUserID"].value), pid=int(creds["ProcessID"].value))
        except (IndexError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("the bus gave no uid and pid for a caller: denied")
            return None
        self._callers[sender] = found
        if len(self._callers) > CALLER_CACHE_SIZE:
            self._callers.popitem(last=False)
        return found

    async def _ask_bus(self, member: str, argument: str) -> Message | None:
        """Call one ``org.freedesktop.DBus`` method taking a string; None when no answer."""
        msg = Message(
            destination=DBUS_NAME,
            path=DBUS_PATH,
            interface=DBUS_NAME,
            member=member,
            signature="s",
            body=[argument],
        )
        return await self._call(msg, DBUS_TIMEOUT)

    async def _call(self, msg: Message, timeout: float) -> Message | None:
        """``bus.call`` with a time bound; None when there is no answer."""
        try:
            async with asyncio.timeout(timeout):
                return await self.bus.call(msg)
        except (TimeoutError, OSError, EOFError, DBusError) as exc:
            log.warning("bus call failed member=%s error=%s", msg.member, exc)
            return None
