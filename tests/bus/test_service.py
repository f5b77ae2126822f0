"""The D-Bus service on a private system bus with a real polkitd and real clients.

The service runs in this process over a real Model and a stand-in engine (see standin.py) so
states can be set exactly; clients are real: busctl, gdbus, a GLib ObjectManager client,
stunmeshctl, dbus-fast — as root and as an unprivileged user.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node

from stunmeshd.bus import BusError, BusService, start_bus
from stunmeshd.bus import refresh as refresh_mod
from stunmeshd.bus.names import (
    BUS_NAME,
    DEVICE_IFACE,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
    device_path,
    peer_path,
)
from stunmeshd.engine import CycleResult
from stunmeshd.errors import StoreError, StunError
from stunmeshd.model import DeviceState, ManagerState, NatMapping, PeerState
from tests.bus.helpers import (
    Signals,
    busctl,
    call,
    ctl,
    gdbus,
    get_all,
    managed_objects,
    refresh,
    run,
    walk_everything,
)
from tests.bus.standin import SECRET_TOKEN, StandInEngine
from tests.bus.sysbus import PYTHON, REPO, PrivateBus, TestUser

pytestmark = pytest.mark.root

REFRESH = "io.github.stunmeshd.StunMesh1.refresh"
RELOAD = "io.github.stunmeshd.StunMesh1.reload"
CONFIGURE = "io.github.stunmeshd.StunMesh1.configure"
EXAMPLE_RULES = REPO / "polkit" / "50-stunmeshd-group.rules.example"


def populate(engine: StandInEngine) -> None:
    """wg0 with two peers, one connected."""
    dev = engine.add_device(
        "wg0",
        state=DeviceState.READY,
        public_endpoints=("198.51.100.10:40000",),
        nat_mapping=NatMapping.ENDPOINT_INDEPENDENT,
        ifindex=7,
    )
    engine.add_peer(dev, "office", state=PeerState.WAITING)
    engine.add_peer(
        dev,
        "laptop",
        state=PeerState.CONNECTED,
        endpoint="203.0.113.20:51820",
        discovered_endpoint="203.0.113.20:51820",
        latest_handshake=1_700_000_000_000_000,
        rx_bytes=1234,
        tx_bytes=5678,
    )


@pytest.fixture
async def populated(private_bus: PrivateBus, engine: StandInEngine) -> Any:
    populate(engine)
    svc = await start_bus(engine, private_bus.address)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        await svc.close()


# ---- reading ---------------------------------------------------------------------------------


async def test_managed_objects_mirror_the_model(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    objects = await managed_objects(client)
    dev = engine.model.devices["wg0"]
    assert set(objects) == {device_path(dev.id)} | {peer_path(p.id) for p in dev.peers.values()}
    props = objects[device_path(dev.id)][DEVICE_IFACE]
    assert props["Interface"] == "wg0"
    assert props["State"] == DeviceState.READY
    assert props["PublicEndpoints"] == ["198.51.100.10:40000"]
    assert props["NatMapping"] == "endpoint-independent"
    assert props["PublicKey"] == dev.public_key
    assert props["ListenPort"] == 51820
    assert props["Ifindex"] == 7
    assert sorted(props["Peers"]) == sorted(peer_path(p.id) for p in dev.peers.values())
    for peer in dev.peers.values():
        pprops = objects[peer_path(peer.id)][PEER_IFACE]
        assert pprops["Name"] == peer.name
        assert pprops["PublicKey"] == peer.public_key
        assert pprops["Device"] == device_path(dev.id)
        assert pprops["Store"] == "cf"
        assert pprops["State"] == peer.state
    laptop = next(p for p in dev.peers.values() if p.name == "laptop")
    lp = objects[peer_path(laptop.id)][PEER_IFACE]
    assert (lp["Endpoint"], lp["RxBytes"], lp["TxBytes"]) == ("203.0.113.20:51820", 1234, 5678)
    assert lp["LatestHandshake"] == 1_700_000_000_000_000
    manager = await get_all(client, ROOT, MANAGER_IFACE)
    assert manager["State"] == ManagerState.RUNNING
    assert manager["StunServers"] == ["198.51.100.1:3478", "203.0.113.1:3478"]
    assert manager["RefreshInterval"] == 300_000_000
    assert manager["Devices"] == [device_path(dev.id)]


async def test_busctl_and_gdbus_introspect_read_and_call(
    populated: BusService, private_bus: PrivateBus, engine: StandInEngine
) -> None:
    addr = private_bus.address
    dev = engine.model.devices["wg0"]
    tree = await run(*busctl(addr, "tree", BUS_NAME))
    assert tree.returncode == 0, tree.stderr
    assert device_path(dev.id) in tree.stdout
    intro = await run(*busctl(addr, "introspect", BUS_NAME, device_path(dev.id)))
    assert intro.returncode == 0, intro.stderr
    assert ".GetPeerByPublicKey" in intro.stdout and "emits-change" in intro.stdout
    prop = await run(
        *busctl(
            addr, "get-property", BUS_NAME, device_path(dev.id), DEVICE_IFACE, "PublicEndpoints"
        )
    )
    assert prop.stdout.strip() == 'as 1 "198.51.100.10:40000"'
    found = await run(
        *busctl(addr, "call", BUS_NAME, ROOT, MANAGER_IFACE, "GetDeviceByInterface", "s", "wg0")
    )
    assert found.stdout.strip() == f'o "{device_path(dev.id)}"'
    done = await run(
        *busctl(
            addr,
            "call",
            BUS_NAME,
            ROOT,
            MANAGER_IFACE,
            "Refresh",
            "a{sv}",
            "1",
            "wait",
            "b",
            "true",
        )
    )
    assert done.returncode == 0, done.stderr
    assert engine.calls == [("refresh", None)]

    g_intro = await run(*gdbus(addr, "introspect", "--dest", BUS_NAME, "--object-path", ROOT))
    assert g_intro.returncode == 0, g_intro.stderr
    assert "GetPermissions" in g_intro.stdout and "CheckPermissions" in g_intro.stdout
    g_call = await run(
        *gdbus(
            addr,
            "call",
            "--dest",
            BUS_NAME,
            "--object-path",
            device_path(dev.id),
            "--method",
            f"{DEVICE_IFACE}.GetPeerByPublicKey",
            next(iter(dev.peers)),
        )
    )
    assert g_call.returncode == 0, g_call.stderr
    assert peer_path(next(iter(dev.peers.values())).id) in g_call.stdout
    g_prop = await run(
        *gdbus(
            addr,
            "call",
            "--dest",
            BUS_NAME,
            "--object-path",
            ROOT,
            "--method",
            f"{PROPERTIES_IFACE}.Get",
            MANAGER_IFACE,
            "Version",
        )
    )
    assert "0.1.0" in g_prop.stdout


async def test_gdbus_monitor_receives_property_changes_and_signals(
    populated: BusService, private_bus: PrivateBus, engine: StandInEngine
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *gdbus(private_bus.address, "monitor", "--dest", BUS_NAME),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        # gdbus subscribes asynchronously: change a property until it shows it
        dev = engine.model.devices["wg0"]
        async with asyncio.timeout(10):
            for n in range(1000):
                dev.update(last_error=f"probe {n}")
                try:
                    while b"probe" not in await asyncio.wait_for(proc.stdout.readline(), 0.2):
                        pass
                    break
                except TimeoutError:
                    continue
        dev.update(state=DeviceState.DISCOVERING, last_error="")
        await asyncio.sleep(0.05)
        dev.update(public_endpoints=("198.51.100.10:40001",))
        from stunmeshd.model import EndpointChanged

        engine.model.emit(EndpointChanged(dev, ("198.51.100.10:40001",)))
        lines: list[str] = []
        async with asyncio.timeout(10):
            while not any("EndpointChanged" in line for line in lines):
                lines.append((await proc.stdout.readline()).decode())
    finally:
        proc.terminate()
        await proc.wait()
    text = "".join(lines)
    assert "PropertiesChanged" in text and "'State': <uint32 2>" in text, text
    assert "'PublicEndpoints': <['198.51.100.10:40001']>" in text
    assert "EndpointChanged (['198.51.100.10:40001'],)" in text


async def test_property_changes_are_batched_per_object_and_step(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    signals = await Signals(client).start()
    dev = engine.model.devices["wg0"]
    peer = next(iter(dev.peers.values()))
    # one engine step: several fields of two objects
    dev.update(state=DeviceState.PUBLISHING)
    peer.update(state=PeerState.APPLIED, endpoint="203.0.113.20:51820")
    dev.update(last_refresh=123, next_refresh=456)
    await signals.wait_for(lambda s: len([x for x in s if x[2] == "PropertiesChanged"]) >= 2)
    await asyncio.sleep(0.2)
    dev_changes = signals.members("PropertiesChanged", device_path(dev.id))
    peer_changes = signals.members("PropertiesChanged", peer_path(peer.id))
    assert dev_changes == [[DEVICE_IFACE, {"State": 3, "LastRefresh": 123, "NextRefresh": 456}, []]]
    assert peer_changes == [[PEER_IFACE, {"State": 3, "Endpoint": "203.0.113.20:51820"}, []]]


async def test_glib_object_manager_client_sees_objects_come_and_go(
    populated: BusService, private_bus: PrivateBus, engine: StandInEngine
) -> None:
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3",
        str(Path(__file__).with_name("gio_watch.py")),
        private_bus.address,
        BUS_NAME,
        ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None

    async def line() -> str:
        return (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()  # type: ignore[union-attr]

    try:
        ready = await line()
        assert ready.startswith("ready")
        old = engine.model.devices["wg0"]
        assert set(ready.split()[1:]) == {device_path(old.id)} | {
            peer_path(p.id) for p in old.peers.values()
        }
        new = engine.add_device("wg1")
        peer = engine.add_peer(new, "branch")
        assert await line() == f"added {device_path(new.id)} {DEVICE_IFACE}"
        assert await line() == f"added {peer_path(peer.id)} {PEER_IFACE}"
        old_peers = {peer_path(p.id) for p in old.peers.values()}
        engine.remove_device("wg0")
        removed = {await line() for _ in range(len(old_peers) + 1)}
        assert removed == {f"removed {p}" for p in old_peers | {device_path(old.id)}}
    finally:
        proc.terminate()
        await proc.wait()


async def test_object_manager_signals_come_from_root(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    signals = await Signals(client).start()
    dev = engine.add_device("wg9")
    await signals.wait_for(lambda s: any(x[2] == "DeviceAdded" for x in s))
    added = [(p, b) for p, _i, m, b in signals.seen if m == "InterfacesAdded"]
    assert added and all(path == ROOT for path, _ in added)
    assert added[0][1][0] == device_path(dev.id)
    assert added[0][1][1][DEVICE_IFACE]["Interface"] == "wg9"
    assert signals.members("DeviceAdded", ROOT) == [[device_path(dev.id)]]
    signals.clear()
    engine.remove_device("wg9")
    await signals.wait_for(lambda s: any(x[2] == "DeviceRemoved" for x in s))
    removed = [(p, b) for p, _i, m, b in signals.seen if m == "InterfacesRemoved"]
    assert removed == [(ROOT, [device_path(dev.id), [DEVICE_IFACE]])]
    # numbers are never reused: a re-created wg9 is a new object
    again = engine.add_device("wg9")
    assert again.id != dev.id
    reply = await call(client, ROOT, MANAGER_IFACE, "GetDeviceByInterface", "s", ["wg9"])
    assert reply.body == [device_path(again.id)]


async def test_getters_never_raise(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    dev = engine.model.devices["wg0"]
    # values no property can carry (bugs upstream) must not break GetAll/GetManagedObjects
    object.__setattr__(dev, "listen_port", 70000)
    object.__setattr__(dev, "public_endpoints", None)
    object.__setattr__(dev, "last_refresh", -5)
    props = await get_all(client, device_path(dev.id), DEVICE_IFACE)
    assert props["ListenPort"] == 0 and props["PublicEndpoints"] == [] and props["LastRefresh"] == 0
    assert props["Interface"] == "wg0"
    objects = await managed_objects(client)
    assert objects[device_path(dev.id)][DEVICE_IFACE]["ListenPort"] == 0


async def test_a_burst_bigger_than_the_socket_buffer_keeps_the_daemon_on_the_bus(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    """2,000 peers appear in one step: megabytes of signals at once (dbus-fast used to drop
    the connection when the socket buffer filled up)."""
    signals = await Signals(client).start()
    dev = engine.add_device("wg5")
    for n in range(2000):
        engine.add_peer(dev, f"p{n}", endpoint="203.0.113.20:51820", last_error="x" * 200)

    def peers_changes() -> list[list[Any]]:
        return [
            b for b in signals.members("PropertiesChanged", device_path(dev.id)) if "Peers" in b[1]
        ]

    await signals.wait_for(
        lambda s: len(signals.members("PeerAdded")) == 2000 and bool(peers_changes()), timeout=60
    )
    await asyncio.sleep(0.2)  # anything sent after would show up now
    assert len(signals.members("InterfacesAdded", ROOT)) == 2001
    # one Peers change for the whole step, not 2,000 ever longer ones
    assert len(peers_changes()) == 1 and len(peers_changes()[0][1]["Peers"]) == 2000
    reply = await call(client, ROOT, MANAGER_IFACE, "GetDevices")
    assert device_path(dev.id) in reply.body[0]


# ---- methods and errors ----------------------------------------------------------------------


async def test_refresh_without_wait_returns_at_once_and_coalesces_nothing_away(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    engine.delay = 5.0  # a slow cycle
    reply = await asyncio.wait_for(refresh(client), 3)
    assert reply.ok
    await asyncio.sleep(0.05)
    assert engine.calls == [("refresh", None)]


async def test_refresh_wait_reports_the_cycle_outcome(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    dev = engine.model.devices["wg0"]
    signals = await Signals(client).start()
    assert (await refresh(client, wait=True)).ok
    await signals.wait_for(lambda s: bool(signals.members("RefreshCompleted")))
    assert signals.members("RefreshCompleted", device_path(dev.id)) == [[True, ""]]

    engine.results["wg0"] = CycleResult(False, "no STUN server answered", StunError)
    reply = await refresh(client, device_path(dev.id), DEVICE_IFACE, wait=True)
    assert (reply.error, reply.text) == (Error.STUN_FAILED, "wg0: no STUN server answered")
    engine.results["wg0"] = CycleResult(False, "store cf: HTTP 503", StoreError)
    reply = await refresh(client, wait=True)
    assert reply.error == Error.STORE_FAILED and "HTTP 503" in reply.text

    peer = next(iter(dev.peers.values()))
    engine.results[peer.public_key] = CycleResult(False, "store cf: timeout", StoreError)
    reply = await refresh(client, peer_path(peer.id), PEER_IFACE, wait=True)
    assert reply.error == Error.STORE_FAILED
    assert ("refresh_peer", peer.public_key) in engine.calls


async def test_refresh_wait_is_bounded(
    populated: BusService,
    engine: StandInEngine,
    client: MessageBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(refresh_mod, "WAIT_BOUND", 0.3)
    engine.delay = 3.0
    reply = await refresh(client, wait=True)
    assert reply.error == Error.TIMEOUT and "goes on" in reply.text


async def test_bad_arguments_give_invalid_args(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    dev = engine.model.devices["wg0"]
    cases = [
        (ROOT, MANAGER_IFACE, "Refresh", "a{sv}", [{"wiat": Variant("b", True)}]),
        (ROOT, MANAGER_IFACE, "Refresh", "a{sv}", [{"wait": Variant("s", "yes")}]),
        (ROOT, MANAGER_IFACE, "Refresh", "s", ["now"]),
        (ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{"force": Variant("b", True)}]),
        (ROOT, MANAGER_IFACE, "SetLogLevel", "s", ["loud"]),
        (ROOT, MANAGER_IFACE, "GetDeviceByInterface", "u", [3]),
        (device_path(dev.id), DEVICE_IFACE, "GetPeerByPublicKey", "s", ["not-a-key"]),
        (device_path(dev.id), DEVICE_IFACE, "Refresh", "a{sv}", [{"wait": Variant("u", 1)}]),
    ]
    for path, iface, member, sig, body in cases:
        reply = await call(client, path, iface, member, sig, body)
        assert reply.error == Error.INVALID_ARGS, (member, body, reply)
    assert engine.calls == []
    missing = await call(client, ROOT, MANAGER_IFACE, "GetDeviceByInterface", "s", ["wg7"])
    assert missing.error == Error.NO_SUCH_DEVICE
    unknown_key = await call(
        client, device_path(dev.id), DEVICE_IFACE, "GetPeerByPublicKey", "s", ["A" * 43 + "="]
    )
    assert unknown_key.error == Error.NO_SUCH_PEER


async def test_reload_applies_or_refuses_with_the_reason(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    signals = await Signals(client).start()
    engine.next_config = engine.with_config(
        stun_servers=("198.51.100.1:3478",), refresh_interval=60.0
    )
    assert (await call(client, ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{}])).ok
    await signals.wait_for(lambda s: bool(signals.members("PropertiesChanged", ROOT)))
    changed = signals.members("PropertiesChanged", ROOT)[0][1]
    assert changed == {"StunServers": ["198.51.100.1:3478"], "RefreshInterval": 60_000_000}

    engine.reload_error = "expected a list"
    reply = await call(client, ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{}])
    assert reply.error == Error.FAILED
    assert "expected a list" in reply.text and "running one stays" in reply.text


async def test_refresh_is_rate_limited_per_caller_identity_not_per_connection(
    populated: BusService, engine: StandInEngine, private_bus: PrivateBus
) -> None:
    """Root: one budget per process, however many connections it opens."""
    replies = []
    for _ in range(30):  # a fresh connection for every call
        bus = await private_bus.connect()
        try:
            replies.append(await refresh(bus))
        finally:
            bus.disconnect()
    limited = [r for r in replies if not r.ok]
    assert limited and all(r.error == Error.LIMITS_EXCEEDED for r in limited)
    assert "try again in" in limited[0].text
    assert len(engine.calls) == len(replies) - len(limited) < 30
    # another root process has its own budget
    other = await run(
        *busctl(private_bus.address, "call", BUS_NAME, ROOT, MANAGER_IFACE, "Refresh", "a{sv}", "0")
    )
    assert other.returncode == 0, other.stderr


EIGHT_REFRESHES = """
import asyncio, sys
from dbus_fast import Message, MessageFlag
from dbus_fast.aio import MessageBus

async def main() -> None:
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    for _ in range(8):
        reply = await bus.call(Message(
            destination="io.github.stunmeshd.StunMesh1", path="/io/github/stunmeshd/StunMesh1",
            interface="io.github.stunmeshd.StunMesh1", member="Refresh", signature="a{sv}",
            body=[{}], flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION))
        print(reply.error_name)

asyncio.run(main())
"""


async def test_unauthorized_callers_always_see_access_denied_and_users_share_a_budget(
    populated: BusService,
    private_bus: PrivateBus,
    test_user: TestUser,
    engine: StandInEngine,
    client: MessageBus,
) -> None:
    addr = private_bus.address
    argv = busctl(addr, "call", BUS_NAME, ROOT, MANAGER_IFACE, "Refresh", "a{sv}", "0")
    denied = await asyncio.gather(*(run(*argv, user=test_user) for _ in range(12)))
    assert all(d.returncode != 0 and "Access denied" in d.stderr for d in denied), denied
    same_connection = await run(str(PYTHON), "-c", EIGHT_REFRESHES, addr, user=test_user)
    assert same_connection.stdout.split() == [Error.ACCESS_DENIED] * 8, same_connection
    assert engine.calls == []
    # allowed by a rule: the user's processes (one connection each) share one budget
    signals = await Signals(client).start()
    private_bus.add_rule("50-stunmeshd.rules", EXAMPLE_RULES.read_text())
    await signals.wait_for(lambda s: bool(signals.members("CheckPermissions", ROOT)), 10)
    results = await asyncio.gather(*(run(*argv, user=test_user) for _ in range(12)))
    ok = [r for r in results if r.returncode == 0]
    limited = [r for r in results if "too many Refresh calls" in r.stderr]
    assert ok and limited and len(ok) + len(limited) == 12, [r.stderr for r in results]
    assert len(engine.calls) == len(ok)


# ---- polkit ------------------------------------------------------------------------------


async def test_root_may_act_and_gets_yes(
    populated: BusService, client: MessageBus, engine: StandInEngine
) -> None:
    perms = await call(client, ROOT, MANAGER_IFACE, "GetPermissions")
    assert perms.body == [{REFRESH: "yes", RELOAD: "yes", CONFIGURE: "yes"}]
    assert (await call(client, ROOT, MANAGER_IFACE, "SetLogLevel", "s", ["info"])).ok
    assert (await call(client, ROOT, MANAGER_IFACE, "Reload", "a{sv}", [{}])).ok
    assert ("reload", None) in engine.calls


async def test_unprivileged_user_reads_but_may_not_act_until_a_rule_allows_refresh(
    populated: BusService,
    private_bus: PrivateBus,
    engine: StandInEngine,
    test_user: TestUser,
    client: MessageBus,
) -> None:
    addr = private_bus.address
    dev = engine.model.devices["wg0"]
    # reading needs nothing
    status = await run(*ctl(addr, "status", "--json"), user=test_user)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["devices"][0]["interface"] == "wg0"
    prop = await run(
        *busctl(addr, "get-property", BUS_NAME, device_path(dev.id), DEVICE_IFACE, "Interface"),
        user=test_user,
    )
    assert prop.stdout.strip() == 's "wg0"'

    # acting is denied (busctl allows interactive authorization; there is no agent)
    for member, sig, args in (
        ("Refresh", "a{sv}", ["0"]),
        ("Reload", "a{sv}", ["0"]),
        ("SetLogLevel", "s", ["debug"]),
    ):
        denied = await run(
            *busctl(addr, "call", BUS_NAME, ROOT, MANAGER_IFACE, member, sig, *args), user=test_user
        )
        assert denied.returncode != 0 and "Access denied" in denied.stderr, (member, denied)
    dev_denied = await run(
        *busctl(addr, "call", BUS_NAME, device_path(dev.id), DEVICE_IFACE, "Refresh", "a{sv}", "0"),
        user=test_user,
    )
    assert "Access denied" in dev_denied.stderr
    # without the interactive flag polkit's "auth_admin_keep" becomes a clear request
    no_prompt = await run(*ctl(addr, "--no-ask-password", "refresh"), user=test_user)
    assert no_prompt.returncode == 4 and "without a password prompt" in no_prompt.stderr
    ctl_denied = await run(*ctl(addr, "reload"), user=test_user)
    assert ctl_denied.returncode == 4 and f"needs the polkit action {RELOAD}" in ctl_denied.stderr
    assert engine.calls == []
    perms = await run(*ctl(addr, "permissions", "--json"), user=test_user)
    assert json.loads(perms.stdout) == {REFRESH: "auth", RELOAD: "auth", CONFIGURE: "auth"}

    # the shipped example rules let group "stunmesh" refresh; polkit says so with Changed
    signals = await Signals(client).start()
    private_bus.add_rule("50-stunmeshd.rules", EXAMPLE_RULES.read_text())
    await signals.wait_for(lambda s: bool(signals.members("CheckPermissions", ROOT)), 10)
    allowed = await run(*ctl(addr, "refresh", "wg0", "--wait"), user=test_user)
    assert allowed.returncode == 0, allowed.stderr
    assert engine.calls == [("refresh", "wg0")]
    still = await run(
        *busctl(addr, "call", BUS_NAME, ROOT, MANAGER_IFACE, "Reload", "a{sv}", "0"), user=test_user
    )
    assert "Access denied" in still.stderr
    perms = await run(*ctl(addr, "permissions", "--json"), user=test_user)
    assert json.loads(perms.stdout) == {REFRESH: "yes", RELOAD: "auth", CONFIGURE: "auth"}


async def test_caller_is_attributed_under_concurrency(
    populated: BusService,
    private_bus: PrivateBus,
    engine: StandInEngine,
    test_user: TestUser,
) -> None:
    """Root's and the user's calls interleave; each gets its own verdict."""
    from stunmeshd.bus.ratelimit import RateLimiter

    addr = private_bus.address
    engine.delay = 0.05  # keep root's calls in flight while the user's arrive
    populated.auth.limiter = RateLimiter(100.0, 100)  # attribution, not the budget, is tested
    roots = [await private_bus.connect() for _ in range(4)]
    try:

        async def root_calls(bus: MessageBus) -> list[bool]:
            return [(await refresh(bus, wait=True)).ok for _ in range(4)]

        async def user_call() -> int:
            res = await run(
                *busctl(addr, "call", BUS_NAME, ROOT, MANAGER_IFACE, "SetLogLevel", "s", "debug"),
                user=test_user,
            )
            return res.returncode

        results = await asyncio.gather(
            *(root_calls(b) for b in roots), *(user_call() for _ in range(6))
        )
    finally:
        for bus in roots:
            bus.disconnect()
    root_results, user_results = results[:4], results[4:]
    assert all(all(r) for r in root_results)  # type: ignore[union-attr]
    assert all(rc != 0 for rc in user_results)


async def test_polkit_unreachable_means_denied_but_root_still_works(
    populated: BusService,
    private_bus: PrivateBus,
    test_user: TestUser,
    client: MessageBus,
) -> None:
    assert private_bus.polkitd is not None
    private_bus.polkitd.terminate()
    await private_bus.polkitd.wait()
    denied = await run(*ctl(private_bus.address, "refresh"), user=test_user)
    assert denied.returncode == 4
    perms = await run(*ctl(private_bus.address, "permissions", "--json"), user=test_user)
    assert set(json.loads(perms.stdout).values()) == {"no"}
    assert (await refresh(client)).ok


# ---- name ownership and bus policy -------------------------------------------------------


async def test_second_daemon_cannot_take_the_name(
    populated: BusService, private_bus: PrivateBus
) -> None:
    with pytest.raises(BusError, match="already running"):
        await start_bus(StandInEngine(), private_bus.address)  # type: ignore[arg-type]


async def test_only_root_may_own_the_name(private_bus: PrivateBus, test_user: TestUser) -> None:
    script = (
        "import asyncio, sys\n"
        "from stunmeshd.bus.connection import connect, claim_name, BusError\n"
        "async def main():\n"
        f"    bus = await connect({private_bus.address!r})\n"
        "    try:\n"
        "        await claim_name(bus)\n"
        "    except BusError as exc:\n"
        "        print(exc); sys.exit(7)\n"
        "asyncio.run(main())\n"
    )
    res = await run(sys.executable, "-c", script, user=test_user)
    assert res.returncode == 7 and "cannot own" in res.stdout, (res.stdout, res.stderr)


# ---- no secrets --------------------------------------------------------------------------


async def test_no_secret_is_readable_on_the_bus(
    populated: BusService, engine: StandInEngine, client: MessageBus, private_bus: PrivateBus
) -> None:
    everything = await walk_everything(client)
    assert "office" in everything  # the walk did reach the peers
    assert SECRET_TOKEN not in everything
    assert "token" not in everything.lower()
    assert "example.com" not in everything  # store options, not only the token
    out = await run(*ctl(private_bus.address, "status", "--json"))
    assert SECRET_TOKEN not in out.stdout and "office" in out.stdout


# ---- the contract: policy table, XML files ---------------------------------------------------


def exported_interfaces(svc: BusService) -> dict[str, Any]:
    return {
        MANAGER_IFACE: svc.manager,
        DEVICE_IFACE: next(iter(svc.devices.values())),
        PEER_IFACE: next(iter(svc.peers.values())),
    }


async def test_live_introspection_equals_the_shipped_xml(
    populated: BusService, client: MessageBus, engine: StandInEngine, private_bus: PrivateBus
) -> None:
    """Member by member: arg names (out-args and signal args too), directions, types,
    access, annotations; ObjectManager only at the root."""
    dev = engine.model.devices["wg0"]
    paths = {
        MANAGER_IFACE: ROOT,
        DEVICE_IFACE: device_path(dev.id),
        PEER_IFACE: peer_path(next(iter(dev.peers.values())).id),
    }
    for name, path in paths.items():
        live_xml = (
            await call(client, path, "org.freedesktop.DBus.Introspectable", "Introspect")
        ).body[0]
        node = Node.parse(live_xml)
        live = next(i for i in node.interfaces if i.name == name)
        shipped_file = REPO / "dbus" / f"{name}.xml"
        shipped = next(i for i in Node.parse(shipped_file.read_text()).interfaces if i.name == name)
        assert full_members(live) == full_members(shipped), name
        has_manager = any(i.name == OBJECT_MANAGER_IFACE for i in node.interfaces)
        assert has_manager == (path == ROOT), path
        if path != ROOT:
            reply = await call(client, path, OBJECT_MANAGER_IFACE, "GetManagedObjects")
            assert reply.error == Error.UNKNOWN_INTERFACE, path
    g_intro = await run(
        *gdbus(private_bus.address, "introspect", "--dest", BUS_NAME, "--object-path", ROOT)
    )
    assert "out ao devices" in g_intro.stdout and "arg_0" not in g_intro.stdout, g_intro.stdout


def full_members(iface: Any) -> dict[str, Any]:
    def args(items: Any) -> list[tuple[str | None, str, str | None, dict[str, str]]]:
        return [
            (a.name, a.signature, a.direction.value if a.direction else None, a.annotations)
            for a in items
        ]

    return {
        "annotations": iface.annotations,
        "methods": {
            m.name: (args(m.in_args), args(m.out_args), m.annotations) for m in iface.methods
        },
        "signals": {s.name: (args(s.args), s.annotations) for s in iface.signals},
        "properties": {
            p.name: (p.signature, p.access.value, p.annotations) for p in iface.properties
        },
    }


async def test_peer_get_machine_id_answers_without_leaking_the_process(
    populated: BusService, client: MessageBus, test_user: TestUser, private_bus: PrivateBus
) -> None:
    machine_id = Path("/etc/machine-id").read_text().strip()
    reply = await call(client, ROOT, "org.freedesktop.DBus.Peer", "GetMachineId")
    assert reply.ok and reply.body == [machine_id], reply
    user = await run(
        *busctl(
            private_bus.address,
            "call",
            BUS_NAME,
            ROOT,
            "org.freedesktop.DBus.Peer",
            "GetMachineId",
        ),
        user=test_user,
    )
    assert user.returncode == 0, user.stderr
    assert user.stdout.strip() == f's "{machine_id}"'
    assert "pid" not in user.stdout + user.stderr


async def test_every_exported_method_is_guarded_or_public(
    populated: BusService, private_bus: PrivateBus, test_user: TestUser
) -> None:
    """Every method is declared (METHOD_POLICY); each guarded one refuses an unprivileged caller."""
    from stunmeshd.bus.service import METHOD_POLICY

    exported = {
        (name, m.name)
        for name, iface in exported_interfaces(populated).items()
        for m in iface.introspect().methods
    }
    assert exported == set(METHOD_POLICY)
    addr = private_bus.address
    paths = {
        MANAGER_IFACE: ROOT,
        DEVICE_IFACE: next(iter(populated.devices.values())).path,
        PEER_IFACE: next(iter(populated.peers.values())).path,
    }
    for (iface, member), rule in METHOD_POLICY.items():
        if rule.action is None:
            continue
        sig, args = ("s", ["info"]) if member == "SetLogLevel" else ("a{sv}", ["0"])
        res = await run(
            *busctl(addr, "call", BUS_NAME, paths[iface], iface, member, sig, *args), user=test_user
        )
        assert "Access denied" in res.stderr, (iface, member, res)


# ---- system files --------------------------------------------------------------------------


async def test_systemd_unit_verifies_and_is_well_sandboxed(tmp_path: Path) -> None:
    from tests.prereq import require_tools

    require_tools("systemd-analyze")
    # the unit as installed: packaging/install.sh renders the template for PREFIX=/usr
    install = str(REPO / "packaging" / "install.sh")
    destdir = f"DESTDIR={tmp_path / 'root'}"
    rendered = await run("env", destdir, "PREFIX=/usr", install, "--data-only")
    assert rendered.returncode == 0, rendered.stderr
    installed = tmp_path / "root" / "usr" / "lib" / "systemd" / "system" / "stunmeshd.service"
    unit = installed.read_text()
    assert not re.search(r"@[a-z]+@", unit)  # every placeholder replaced
    assert "ExecStart=/usr/bin/stunmeshd\n" in unit
    for required in (
        "Type=dbus",
        f"BusName={BUS_NAME}",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "Alias=dbus-io.github.stunmeshd.StunMesh1.service",
        "ExecReload=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ):
        assert required in unit
    # it manages the host's WireGuard: never a private network or user namespace
    assert not re.search(r"^\s*Private(Network|Users)\s*=", unit, re.MULTILINE)
    # verify a copy whose programs exist on this machine (stunmeshd is not installed here)
    copy = tmp_path / "stunmeshd.service"
    copy.write_text(unit.replace("/usr/bin/stunmeshd", "/bin/true"))
    verify = await run("systemd-analyze", "verify", str(copy))
    assert verify.returncode == 0, verify.stderr
    assert "stunmeshd.service" not in verify.stderr, verify.stderr  # no warning about our unit
    security = await run("systemd-analyze", "security", "--offline=yes", str(installed))
    match = re.search(r"Overall exposure level for stunmeshd.service: (\d+\.\d+)", security.stdout)
    assert match, security.stdout[-500:]
    assert float(match.group(1)) <= 2.5


def test_activation_file_hands_over_to_systemd() -> None:
    text = (REPO / "dbus" / "io.github.stunmeshd.StunMesh1.service").read_text()
    assert f"Name={BUS_NAME}" in text
    assert "Exec=/bin/false" in text
    assert "SystemdService=dbus-io.github.stunmeshd.StunMesh1.service" in text


# ---- stunmeshctl against the service -------------------------------------------------------


async def test_ctl_monitor_prints_one_line_per_change(
    populated: BusService, private_bus: PrivateBus, engine: StandInEngine
) -> None:
    from stunmeshd.model import EndpointChanged, RefreshCompleted

    for as_json in (False, True):
        argv = ctl(private_bus.address, "monitor", *(["--json"] if as_json else []))
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        dev = engine.model.devices["wg0"]
        peer = next(p for p in dev.peers.values() if p.name == "office")
        lines: list[str] = []
        try:
            # the monitor subscribes asynchronously: poke until it shows a change
            async with asyncio.timeout(15):
                for n in range(1000):
                    dev.update(last_error=f"probe {n}")
                    try:
                        line = await asyncio.wait_for(proc.stdout.readline(), 0.3)
                    except TimeoutError:
                        continue
                    if b"probe" in line:
                        break
                dev.update(last_error="in sync")  # after any probe still on its way
                while b"in sync" not in await proc.stdout.readline():
                    pass
            state = PeerState.APPLIED if as_json else PeerState.CONNECTED
            peer.update(state=state, endpoint=f"203.0.113.20:{51820 + as_json}")
            await asyncio.sleep(0.05)
            engine.model.emit(RefreshCompleted(dev, False, "no STUN server answered"))
            engine.model.emit(EndpointChanged(dev, ("198.51.100.10:40002",)))
            added = engine.add_device("wg3")
            async with asyncio.timeout(10):
                while len(lines) < 5:
                    lines.append((await proc.stdout.readline()).decode().strip())
        finally:
            proc.send_signal(2)  # Ctrl-C: a clean end
            rc = await proc.wait()
        assert rc == 0
        if as_json:
            events = [json.loads(line) for line in lines]
            assert events[0]["object"] == "wg0/office"
            assert events[0]["changes"] == {"State": "applied", "Endpoint": "203.0.113.20:51821"}
            assert events[1]["signal"] == "RefreshCompleted" and events[1]["success"] is False
            assert events[2]["endpoints"] == ["198.51.100.10:40002"]
            assert {"object": "wg3", "signal": "added"}.items() <= events[3].items()
            assert all(
                re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", e["time"]) for e in events
            )
        else:
            stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
            assert re.match(stamp + r"wg0/office: PropertiesChanged ", lines[0]), lines
            assert "State=connected" in lines[0] and "Endpoint=203.0.113.20:51820" in lines[0]
            assert re.match(
                stamp + "wg0: RefreshCompleted failed: no STUN server answered", lines[1]
            ), lines
            assert lines[2].endswith("wg0: EndpointChanged 198.51.100.10:40002"), lines
            assert lines[3].endswith("wg3: added"), lines
            assert lines[4].endswith("manager: DeviceAdded wg3"), lines
            assert added.interface == "wg3"
        engine.remove_device("wg3")


async def test_manager_state_changes_are_announced(
    populated: BusService, engine: StandInEngine, client: MessageBus, private_bus: PrivateBus
) -> None:
    signals = await Signals(client).start()
    engine.model.set_state(ManagerState.DEGRADED)
    await signals.wait_for(lambda s: bool(signals.members("PropertiesChanged", ROOT)))
    assert signals.members("PropertiesChanged", ROOT) == [[MANAGER_IFACE, {"State": 3}, []]]
    status = await run(*ctl(private_bus.address, "status"))
    assert status.stdout.startswith("stunmeshd 0.1.0: degraded")


async def test_ctl_uses_dbus_system_bus_address_by_default(
    populated: BusService, private_bus: PrivateBus
) -> None:
    import os

    from tests.bus.sysbus import PYTHON

    proc = await asyncio.create_subprocess_exec(
        str(PYTHON),
        "-m",
        "stunmeshd.ctl",
        "devices",
        "--json",
        env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private_bus.address),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert [d["interface"] for d in json.loads(out)] == ["wg0"]


async def test_no_signal_from_an_object_after_its_interfaces_removed(
    populated: BusService, engine: StandInEngine, client: MessageBus
) -> None:
    signals = await Signals(client).start()
    dev = engine.model.devices["wg0"]
    gone = [device_path(dev.id), *(peer_path(p.id) for p in dev.peers.values())]
    engine.remove_device("wg0")
    await signals.wait_for(lambda s: len(signals.members("InterfacesRemoved", ROOT)) == 3)
    engine.model.set_state(ManagerState.DEGRADED)  # a barrier: whatever was pending came before
    await signals.wait_for(lambda s: bool(signals.members("PropertiesChanged", ROOT)))
    for path in gone:
        removed_at = next(
            i
            for i, (p, _iface, member, body) in enumerate(signals.seen)
            if member == "InterfacesRemoved" and p == ROOT and body[0] == path
        )
        late = [s for s in signals.seen[removed_at + 1 :] if s[0] == path]
        assert late == [], f"signals from {path} after its InterfacesRemoved: {late}"
