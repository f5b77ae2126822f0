"""The real daemon on a private system bus: two stunmeshd behind NATs in the lab, each on its
own bus (both own the same name), host A's bus with a real polkitd.

What a desktop applet or a script sees: the tree mirrors the engine, peers reach "connected"
through PropertiesChanged, Refresh and Reload work for root and not for others, no secret is
readable, and the name goes away with the daemon.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, MANAGER_IFACE, PEER_IFACE, ROOT
from stunmeshd.lab.topology import NatMode
from stunmeshd.model import DeviceState, PeerState
from tests.bus.busmesh import SPARE_TOKEN, BusMesh, by_iface, connected, wait_objects
from tests.bus.helpers import Signals, busctl, ctl, managed_objects, run, walk_everything
from tests.bus.sysbus import TestUser

pytestmark = pytest.mark.root


async def test_daemon_on_the_bus_end_to_end(bus_mesh: BusMesh, test_user: TestUser) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    client = await bus_a.connect()
    try:
        signals = await Signals(client).start()
        await bus_mesh.start(mesh.a, bus_a)
        await bus_mesh.start(mesh.b, bus_mesh.bus_b)
        await bus_a.wait_for_name(BUS_NAME, timeout=20)

        # the peer gets connected, and the tree says so
        objects = await wait_objects(client, connected)
        ((dev_path, dev),) = by_iface(objects, DEVICE_IFACE).items()
        ((peer_path, peer),) = by_iface(objects, PEER_IFACE).items()
        assert dev["Interface"] == mesh.a.wg.ifname and dev["Backend"] == "wireguard-go"
        assert dev["PublicKey"] == mesh.a.wg.public_key_b64
        assert dev["ListenPort"] == 51820 and dev["State"] == DeviceState.READY
        assert dev["PublicEndpoints"] == ["198.51.100.10:40000"]  # natA moves the port
        assert dev["Peers"] == [peer_path] and dev["LastRefresh"] > 0
        assert peer["Device"] == dev_path and peer["Name"] == "hostB"
        assert peer["PublicKey"] == mesh.b.wg.public_key_b64 and peer["Store"] == "lab"
        assert peer["Endpoint"] == "203.0.113.20:51820" and peer["LatestHandshake"] > 0

        # the way there was announced: the peer's state changes
        peer_states = [
            b[1]["State"]
            for b in signals.members("PropertiesChanged", peer_path)
            if "State" in b[1]
        ]
        assert peer_states and peer_states[-1] == PeerState.CONNECTED

        # natA re-maps WireGuard's port; root refreshes and waits: the new endpoint is
        # announced (EndpointChanged, PublicEndpoints) and RefreshCompleted follows
        signals.clear()
        await mesh.lab.set_nat(mesh.a.site, NatMode.PORT_CHANGING, snat_port=40001)
        await mesh.lab.flush_conntrack(mesh.a.site)
        done = await run(*ctl(bus_a.address, "refresh", "--wait"))
        assert done.returncode == 0, done.stderr
        await signals.wait_for(lambda s: bool(signals.members("RefreshCompleted", dev_path)))
        assert signals.members("RefreshCompleted", dev_path)[0] == [True, ""]
        assert ["198.51.100.10:40001"] in [b[0] for b in signals.members("EndpointChanged")]
        endpoints = [
            b[1]["PublicEndpoints"]
            for b in signals.members("PropertiesChanged", dev_path)
            if "PublicEndpoints" in b[1]
        ]
        assert endpoints[-1] == ["198.51.100.10:40001"]

        # an unprivileged user reads everything but may not refresh
        status = await run(*ctl(bus_a.address, "peers", "--json"), user=test_user)
        assert json.loads(status.stdout)[0]["state"] == "connected"
        denied = await run(
            *busctl(bus_a.address, "call", BUS_NAME, ROOT, MANAGER_IFACE, "Refresh", "a{sv}", "0"),
            user=test_user,
        )
        assert "Access denied" in denied.stderr

        # no secret anywhere: the WireGuard private key (base64 and hex), the store token
        everything = await walk_everything(client)
        assert "hostB" in everything
        for secret in (
            base64.b64encode(mesh.a.wg.private_key).decode(),
            mesh.a.wg.private_key.hex(),
            SPARE_TOKEN,
        ):
            assert secret not in everything

        # reload: a new interval is announced; a removed peer disappears
        signals.clear()
        mesh.write_config(mesh.a, bus_mesh.config_a(refresh_interval="7m"))
        assert (await run(*ctl(bus_a.address, "reload"))).returncode == 0
        await signals.wait_for(
            lambda s: any(
                "RefreshInterval" in b[1] for b in signals.members("PropertiesChanged", ROOT)
            )
        )
        config = bus_mesh.config_a()
        config["interfaces"][mesh.a.wg.ifname]["peers"] = {}
        mesh.write_config(mesh.a, config)
        assert (await run(*ctl(bus_a.address, "reload"))).returncode == 0
        await signals.wait_for(lambda s: bool(signals.members("InterfacesRemoved", ROOT)))
        assert signals.members("InterfacesRemoved", ROOT)[0] == [peer_path, [PEER_IFACE]]
        assert signals.members("PeerRemoved", dev_path) == [[peer_path]]

        # a broken file is refused with the reason; the daemon keeps its state
        mesh.a.config_path.write_text("refresh_interval: [\n")
        bad = await run(*ctl(bus_a.address, "reload"))
        assert bad.returncode == 1 and str(mesh.a.config_path) in bad.stderr
        assert dev_path in await managed_objects(client)

        # SIGTERM: the daemon leaves the bus and exits cleanly
        assert await mesh.stop_daemon(mesh.a) == 0
        gone = await run(*ctl(bus_a.address, "status"))
        assert gone.returncode == 3 and "not running" in gone.stderr
    finally:
        client.disconnect()


async def test_second_daemon_cannot_own_the_name_and_exits_nonzero(bus_mesh: BusMesh) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    await bus_mesh.start(mesh.a, bus_a)
    await bus_a.wait_for_name(BUS_NAME, timeout=20)
    # host B's daemon pointed at A's bus: the name is taken
    proc = await mesh.start_daemon(mesh.b, "--bus", bus_a.address)
    assert await asyncio.wait_for(proc.wait(), 20) == 1
    assert "another process owns it" in mesh.b.log_text()
    assert mesh.a.process is not None and mesh.a.process.returncode is None
