"""Fixtures for the applet tests: the lab with both daemons configured (directory store)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.bus.busmesh import BusMesh, bus_mesh_lab
from tests.bus.conftest import require_bus_bed, test_user  # noqa: F401  (the desktop user)


@pytest.fixture
async def lab() -> AsyncIterator[BusMesh]:
    """Host A's private system bus with polkitd, host B's, and the lab (daemons not started)."""
    require_bus_bed()
    async with bus_mesh_lab(store="dir") as mesh:
        yield mesh
