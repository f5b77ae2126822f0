"""Fixtures for the bus tests: a private system bus with polkitd, the test user, the service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from dbus_fast.aio import MessageBus

from stunmeshd.bus import BusService, start_bus
from tests.bus.busmesh import BusMesh, bus_mesh_lab
from tests.bus.standin import StandInEngine
from tests.bus.sysbus import PrivateBus, TestUser
from tests.installed import Installed
from tests.prereq import require, require_root, require_tools

BUS_TOOLS = ("dbus-daemon", "busctl", "gdbus", "unshare", "setpriv", "useradd")


def require_bus_bed() -> None:
    require_root()
    require_tools(*BUS_TOOLS)
    from pathlib import Path

    require(Path("/usr/lib/polkit-1/polkitd").exists(), "polkitd is not installed")


@pytest.fixture(scope="session")
def test_user(installed: Installed) -> Iterator[TestUser]:
    require_bus_bed()
    user = TestUser(installed.python).ensure()
    yield user
    user.remove()


@pytest.fixture
async def private_bus() -> AsyncIterator[PrivateBus]:
    """A private system bus with a real polkitd (our actions, an empty rules directory)."""
    require_bus_bed()
    async with PrivateBus() as bus:
        await bus.start_polkit()
        yield bus


@pytest.fixture
def engine() -> StandInEngine:
    eng = StandInEngine()
    eng.start()
    return eng


@pytest.fixture
async def service(private_bus: PrivateBus, engine: StandInEngine) -> AsyncIterator[BusService]:
    svc = await start_bus(engine, private_bus.address)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def client(private_bus: PrivateBus) -> AsyncIterator[MessageBus]:
    bus = await private_bus.connect()
    try:
        yield bus
    finally:
        bus.disconnect()
        await asyncio.sleep(0)


@pytest.fixture
async def bus_mesh() -> AsyncIterator[BusMesh]:
    """The lab with both daemons configured (not started), A's bus with polkitd."""
    require_bus_bed()
    async with bus_mesh_lab() as mesh:
        yield mesh
