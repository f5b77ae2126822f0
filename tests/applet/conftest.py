"""Fixtures for the applet tests: the lab with both daemons configured (directory store)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.bus.busmesh import BusMesh, bus_mesh_lab
from tests.bus.conftest import require_bus_bed
from tests.bus.sysbus import TestUser
from tests.installed import Installed


@pytest.fixture
async def lab() -> AsyncIterator[BusMesh]:
    """Host A's private system bus with polkitd, host B's, and the lab (daemons not started)."""
    require_bus_bed()
    async with bus_mesh_lab(store="dir") as mesh:
        yield mesh


@pytest.fixture(scope="session")
def applet_user(installed: Installed) -> Iterator[TestUser]:
    """The unprivileged desktop user (runs the installed copy, like tests/bus's test_user)."""
    require_bus_bed()
    user = TestUser(installed.python).ensure()
    yield user
    user.remove()
