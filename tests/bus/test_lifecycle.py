"""Objects over their life, with the real daemon, real wireguard-go and a private system bus:
the manager's State follows its devices, a removed object stays silent, and a configured peer
the interface lacks is visible (NOT_ON_DEVICE, with the reason) until WireGuard gains it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nacl.public import PrivateKey

from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, MANAGER_IFACE, PEER_IFACE, ROOT
from stunmeshd.model import DeviceState, ManagerState, PeerState
from tests.bus.busmesh import BusMesh, by_iface, wait_objects
from tests.bus.helpers import Signals, get_all

pytestmark = pytest.mark.root


async def wait_manager_state(client: Any, state: ManagerState, timeout: float = 30.0) -> None:
    seen: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen = (await get_all(client, ROOT, MANAGER_IFACE))["State"]
                if seen == state:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"manager State stayed {seen}, never {state!r}") from None


def ready_device(objects: dict[str, Any]) -> bool:
    devices = by_iface(objects, DEVICE_IFACE)
    return len(devices) == 1 and all(d["State"] == DeviceState.READY for d in devices.values())


async def test_manager_state_follows_devices_and_removed_objects_stay_silent(
    bus_mesh: BusMesh,
) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    a, b = mesh.a, mesh.b
    client = await bus_a.connect()
    try:
        signals = await Signals(client).start()
        await bus_mesh.start(a, bus_a)
        await bus_a.wait_for_name(BUS_NAME, timeout=20)
        objects = await wait_objects(client, ready_device)
        ((old_device, _),) = by_iface(objects, DEVICE_IFACE).items()
        old_peers = set(by_iface(objects, PEER_IFACE))
        await wait_manager_state(client, ManagerState.RUNNING)

        await a.wg.stop()  # the interface vanishes: the daemon is degraded
        await wait_manager_state(client, ManagerState.DEGRADED)
        a.wg = await mesh.lab.start_wireguard(a.site, private_key=a.wg.private_key)
        await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")
        objects = await wait_objects(
            client, lambda o: ready_device(o) and old_device not in by_iface(o, DEVICE_IFACE)
        )
        # back and ready: running again, without a Reload
        await wait_manager_state(client, ManagerState.RUNNING)
        await asyncio.sleep(1)  # let any late signal arrive

        for gone in (old_device, *old_peers):
            removed_at = next(
                i
                for i, (path, _iface, member, body) in enumerate(signals.seen)
                if member == "InterfacesRemoved" and path == ROOT and body[0] == gone
            )
            late = [s for s in signals.seen[removed_at + 1 :] if s[0] == gone]
            assert late == [], f"signals from {gone} after its InterfacesRemoved: {late}"
    finally:
        client.disconnect()


async def test_configured_peer_not_on_the_interface_is_shown_and_moves_on(
    bus_mesh: BusMesh,
) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    a = mesh.a
    stranger = PrivateKey.generate().public_key.encode()
    config = bus_mesh.config_a()
    ((ifname, iface),) = config["interfaces"].items()
    iface["peers"]["hostC"] = {"public_key": _b64(stranger), "plugin": "lab"}
    mesh.write_config(a, config)
    client = await bus_a.connect()
    try:
        signals = await Signals(client).start()
        await bus_mesh.start(a, bus_a)
        await bus_a.wait_for_name(BUS_NAME, timeout=20)

        def host_c(objects: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
            found = [
                (p, v) for p, v in by_iface(objects, PEER_IFACE).items() if v["Name"] == "hostC"
            ]
            return found[0] if found else None

        objects = await wait_objects(client, lambda o: host_c(o) is not None)
        path, peer = host_c(objects)  # type: ignore[misc]
        assert peer["State"] == PeerState.NOT_ON_DEVICE
        assert f"not on WireGuard interface {ifname}" in peer["LastError"]
        assert peer["PublicKey"] == _b64(stranger) and peer["Store"] == "lab"
        (device,) = by_iface(objects, DEVICE_IFACE).values()
        assert path in device["Peers"]

        await a.wg.add_peer(stranger, "10.99.0.3/32")  # WireGuard gains the peer
        objects = await wait_objects(
            client,
            lambda o: (
                (found := host_c(o)) is not None
                and found[1]["State"] not in (PeerState.NOT_ON_DEVICE, PeerState.UNKNOWN)
            ),
        )
        moved_path, moved = host_c(objects)  # type: ignore[misc]
        assert moved_path == path  # the same object moved on
        assert "not on WireGuard interface" not in moved["LastError"]
        states = [
            b[1]["State"] for b in signals.members("PropertiesChanged", path) if "State" in b[1]
        ]
        assert states and states[-1] == moved["State"]
    finally:
        client.disconnect()


def _b64(key: bytes) -> str:
    import base64

    return base64.b64encode(key).decode()
