"""The routing-daemon hooks in examples/hooks/ work as the README says, on a real bus."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stunmeshd.bus import start_bus
from stunmeshd.lab.sysbus import REPO, PrivateBus
from stunmeshd.model import EndpointChanged
from tests.bus.standin import StandInEngine

pytestmark = pytest.mark.root
HOOKS = REPO / "examples" / "hooks"


def bus_env(bus: PrivateBus) -> dict[str, str]:
    return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus.address}


async def test_dispatcher_script_triggers_refresh(
    private_bus: PrivateBus, engine: StandInEngine
) -> None:
    engine.add_device("wg0")
    svc = await start_bus(engine, private_bus.address)  # type: ignore[arg-type]
    try:
        for action, refreshes in (("up", 1), ("down", 1), ("dhcp4-change", 2)):
            proc = await asyncio.create_subprocess_exec(
                str(HOOKS / "50-stunmeshd"), "eth0", action, env=bus_env(private_bus)
            )
            assert await proc.wait() == 0
            assert [c for c in engine.calls if c[0] == "refresh"] == [("refresh", None)] * refreshes
    finally:
        await svc.close()


async def test_endpoint_follower_runs_the_command_on_endpoint_changed(
    private_bus: PrivateBus, engine: StandInEngine, tmp_path: Path
) -> None:
    device = engine.add_device("wg0")
    out = tmp_path / "seen"
    svc = await start_bus(engine, private_bus.address)  # type: ignore[arg-type]
    proc = await asyncio.create_subprocess_exec(
        str(HOOKS / "endpoint-follower.sh"),
        f'echo "$STUNMESH_DEVICE $STUNMESH_ENDPOINTS" >> {out}',
        env=bus_env(private_bus),
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(15):
            n = 0
            while not out.exists():  # gdbus subscribes asynchronously: repeat until seen
                n += 1
                engine.model.emit(EndpointChanged(device, (f"198.51.100.10:{40000 + n}",)))
                await asyncio.sleep(0.2)
        seen = out.read_text().splitlines()[0]
        assert seen.startswith(f"/io/github/stunmeshd/StunMesh1/Devices/{device.id} ")
        assert "198.51.100.10:400" in seen
    finally:
        os.killpg(proc.pid, 15)
        await proc.wait()
        await svc.close()
