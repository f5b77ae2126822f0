"""``stunmeshctl refresh --wait --timeout``: a cycle longer than the daemon's own wait bound is
still waited for (through RefreshCompleted), a failure is reported, and a short timeout gives up
clearly. The daemon side is the real bus service over a stand-in engine whose cycles take as
long as the test says."""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.bus import refresh as bus_refresh
from stunmeshd.bus.service import BusService
from stunmeshd.engine import CycleResult
from tests.bus.helpers import ctl, run
from tests.bus.standin import StandInEngine
from tests.bus.sysbus import PrivateBus

pytestmark = pytest.mark.root


@pytest.fixture
def wg0(engine: StandInEngine) -> StandInEngine:
    engine.add_device("wg0")
    return engine


async def test_refresh_waits_past_the_daemons_bound(
    wg0: StandInEngine,
    service: BusService,
    private_bus: PrivateBus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus_refresh, "WAIT_BOUND", 0.2)  # the daemon gives up waiting at once
    wg0.delay = 1.0  # the cycle takes longer than that
    addr = private_bus.address

    # without --timeout the daemon's bound decides: its Timeout error, as before
    bounded = await run(*ctl(addr, "refresh", "wg0", "--wait"))
    assert bounded.returncode == 1 and "Timeout" in bounded.stderr
    await asyncio.sleep(wg0.delay)  # that cycle goes on: let it end before the next one

    # with a longer --timeout the client waits for the cycle's RefreshCompleted
    done = await run(*ctl(addr, "refresh", "wg0", "--wait", "--timeout", "10"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "refreshed interface wg0\n"

    # ... and reports the cycle's failure
    wg0.results["wg0"] = CycleResult(False, "no STUN server answered")
    failed = await run(*ctl(addr, "refresh", "--wait", "--timeout", "10"))
    assert failed.returncode == 1
    assert "refresh of all interfaces failed: no STUN server answered" in failed.stderr

    # a timeout shorter than the cycle gives up, saying the cycle goes on
    await asyncio.sleep(wg0.delay)  # (the stand-in does not coalesce overlapping cycles)
    wg0.delay = 3.0
    slow = await run(*ctl(addr, "refresh", "wg0", "--wait", "--timeout", "0.5"))
    assert slow.returncode == 1 and "no result within 0.5 s" in slow.stderr
