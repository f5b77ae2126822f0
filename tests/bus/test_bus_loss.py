"""Bus loss: the daemon gets back on a bus that returns at the same address, with its whole
tree; and when the name is taken meanwhile, it exits non-zero for systemd to restart it."""

from __future__ import annotations

import asyncio
import os

import pytest
from dbus_fast import NameFlag, RequestNameReply

from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, PEER_IFACE, device_path, peer_path
from stunmeshd.model import DeviceState
from tests.bus.busmesh import BusMesh
from tests.bus.helpers import Signals, managed_objects
from tests.bus.standin import StandInEngine
from tests.bus.sysbus import PrivateBus
from tests.bus.test_service import populate

pytestmark = pytest.mark.root

BACK_WITHIN = 5.0  # s: the contract (docs/dbus-api.md, "Bus loss")


async def test_a_bus_replaced_at_the_same_address_is_rejoined_with_the_whole_tree(
    private_bus: PrivateBus, engine: StandInEngine
) -> None:
    from stunmeshd.bus import BusKeeper  # here: the other test runs the daemon, not this API

    populate(engine)
    keeper = await BusKeeper.start(engine, private_bus.address)
    try:
        assert keeper.service is not None
        before = keeper.service.bus  # a new bus numbers from :1.0 again: compare connections
        for _ in range(2):  # and again: the keeper keeps going
            await private_bus.restart()
            await private_bus.wait_for_name(BUS_NAME, timeout=BACK_WITHIN)
        assert keeper.service is not None and keeper.service.bus is not before
        assert not keeper.failed.done()

        client = await private_bus.connect()
        try:
            objects = await managed_objects(client)
            dev = engine.model.devices["wg0"]
            assert set(objects) == {device_path(dev.id)} | {
                peer_path(p.id) for p in dev.peers.values()
            }
            assert objects[device_path(dev.id)][DEVICE_IFACE]["State"] == DeviceState.READY
            laptop = next(p for p in dev.peers.values() if p.name == "laptop")
            assert objects[peer_path(laptop.id)][PEER_IFACE]["RxBytes"] == 1234
            # and the model's changes flow again
            signals = await Signals(client).start()
            dev.update(state=DeviceState.FAILED, last_error="STUN failed")
            await signals.wait_for(
                lambda s: bool(signals.members("PropertiesChanged", device_path(dev.id)))
            )
            changed = signals.members("PropertiesChanged", device_path(dev.id))[0][1]
            assert changed == {"State": DeviceState.FAILED, "LastError": "STUN failed"}
        finally:
            client.disconnect()
    finally:
        await keeper.close()


async def test_a_name_taken_while_the_bus_was_away_makes_the_daemon_exit_nonzero(
    bus_mesh: BusMesh,
) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    await bus_mesh.start(mesh.a, bus_a)
    await bus_a.wait_for_name(BUS_NAME, timeout=20)
    assert mesh.a.process is not None
    async with PrivateBus() as replacement:
        squatter = await replacement.connect()
        try:
            reply = await squatter.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
            assert reply == RequestNameReply.PRIMARY_OWNER
            await bus_a.kill()
            # the replacement bus, with the name already owned, appears at A's address
            os.replace(replacement.socket, bus_a.socket)
            assert await asyncio.wait_for(mesh.a.process.wait(), 30) == 1
        finally:
            squatter.disconnect()
    log = mesh.a.log_text()
    assert "lost the D-Bus connection" in log and "another process owns it" in log
