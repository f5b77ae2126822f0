"""Hostile callers on a private system bus with dbus-daemon's default limits and a real polkitd.

Every method that takes a string or a dictionary gets an 8 MiB argument of control characters
and a short one full of terminal escapes: the reply stays small and escaped, the log stays
small, and the service stays on the bus with the same connection.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from stunmeshd.bus import BusService
from stunmeshd.bus.names import (
    BUS_NAME,
    DEVICE_IFACE,
    MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
)
from tests.bus.helpers import call, run
from tests.bus.standin import StandInEngine
from tests.bus.sysbus import PYTHON, PrivateBus, TestUser
from tests.bus.test_service import populate

pytestmark = pytest.mark.root

HUGE = "\x01" * (8 * 1024 * 1024)  # repr() would make this 32 MiB: over the bus's limit
NASTY = "wg\x1b[31m\x7fred\n\u202e\\\"'"
REPLY_LIMIT = 2000  # bytes of error text: a small constant, whatever the request
LOG_LIMIT = 2048


def string_and_dict_calls(svc: BusService, arg: str) -> list[tuple[str, str, str, str, list[Any]]]:
    """(path, interface, member, signature, body) for every method taking s or a{sv}."""
    dev = next(iter(svc.devices.values())).path
    peer = next(iter(svc.peers.values())).path
    opts = {arg: Variant("b", True)}
    return [
        (ROOT, MANAGER_IFACE, "GetDeviceByInterface", "s", [arg]),
        (ROOT, MANAGER_IFACE, "SetLogLevel", "s", [arg]),
        (ROOT, MANAGER_IFACE, "Refresh", "a{sv}", [opts]),
        (ROOT, MANAGER_IFACE, "Reload", "a{sv}", [opts]),
        (dev, DEVICE_IFACE, "GetPeerByPublicKey", "s", [arg]),
        (dev, DEVICE_IFACE, "Refresh", "a{sv}", [opts]),
        (peer, PEER_IFACE, "Refresh", "a{sv}", [opts]),
        (dev, PROPERTIES_IFACE, "Get", "ss", [arg, "State"]),
        (dev, PROPERTIES_IFACE, "Get", "ss", [DEVICE_IFACE, arg]),
        (peer, PROPERTIES_IFACE, "GetAll", "s", [arg]),
        (ROOT, PROPERTIES_IFACE, "Set", "ssv", [MANAGER_IFACE, arg, Variant("s", arg)]),
        (ROOT, PROPERTIES_IFACE, "Set", "ssv", [arg, "State", Variant("u", 1)]),
    ]


@pytest.fixture
async def hostile_target(private_bus: PrivateBus, engine: StandInEngine) -> Any:
    from stunmeshd.bus import start_bus

    populate(engine)
    svc = await start_bus(engine, private_bus.address)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        await svc.close()


async def still_on_the_bus(svc: BusService, client: MessageBus) -> None:
    owner = await call(
        client,
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetNameOwner",
        "s",
        [BUS_NAME],
        destination="org.freedesktop.DBus",
    )
    assert owner.ok and owner.body == [svc.bus.unique_name]  # the same connection, never dropped
    assert (await call(client, ROOT, MANAGER_IFACE, "GetDevices")).ok


@pytest.mark.parametrize("arg", [HUGE, NASTY], ids=["8MiB-control-chars", "escapes"])
async def test_every_string_or_dict_argument_gets_a_bounded_escaped_error(
    hostile_target: BusService,
    engine: StandInEngine,
    client: MessageBus,
    caplog: pytest.LogCaptureFixture,
    arg: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    for path, iface, member, sig, body in string_and_dict_calls(hostile_target, arg):
        reply = await call(client, path, iface, member, sig, body)
        assert not reply.ok, (member, reply.error)
        assert len(reply.text.encode()) <= REPLY_LIMIT, (member, reply.error, len(reply.text))
        assert not any(c in reply.text for c in "\x7f\x01\x1b\n\u202e"), (member, reply.text)
        if member == "GetDeviceByInterface":
            assert reply.error == Error.NO_SUCH_DEVICE
            assert ("\\x01" if arg is HUGE else "\\x1b[31m") in reply.text
        await still_on_the_bus(hostile_target, client)
    assert engine.calls == []
    assert all(len(r.getMessage()) <= LOG_LIMIT for r in caplog.records)
    assert not any("\x01" in r.getMessage() or "\x1b" in r.getMessage() for r in caplog.records)


UNPRIVILEGED_HUGE_CALLS = """
import asyncio, sys
from dbus_fast import Message, MessageFlag, Variant
from dbus_fast.aio import MessageBus

async def main() -> None:
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    huge = "\\x01" * (8 * 1024 * 1024)
    for member, sig, body in (
        ("GetDeviceByInterface", "s", [huge]),
        ("Refresh", "a{sv}", [{huge: Variant("b", True)}]),
        ("SetLogLevel", "s", [huge]),
    ):
        reply = await bus.call(Message(
            destination="io.github.stunmeshd.StunMesh1", path="/io/github/stunmeshd/StunMesh1",
            interface="io.github.stunmeshd.StunMesh1", member=member, signature=sig, body=body,
            flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION))
        print(member, reply.error_name, len(str(reply.body[0]).encode()))

asyncio.run(main())
"""


async def test_an_unprivileged_8mib_call_cannot_take_the_service_off_the_bus(
    hostile_target: BusService,
    private_bus: PrivateBus,
    test_user: TestUser,
    client: MessageBus,
) -> None:
    res = await run(
        str(PYTHON), "-c", UNPRIVILEGED_HUGE_CALLS, private_bus.address, user=test_user, timeout=60
    )
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert lines["GetDeviceByInterface"].split()[0] == Error.NO_SUCH_DEVICE
    # authorization comes first: the option key is never even looked at
    assert lines["Refresh"].split()[0] == Error.ACCESS_DENIED
    assert lines["SetLogLevel"].split()[0] == Error.ACCESS_DENIED
    assert all(int(v.split()[1]) <= REPLY_LIMIT for v in lines.values()), lines
    await still_on_the_bus(hostile_target, client)
