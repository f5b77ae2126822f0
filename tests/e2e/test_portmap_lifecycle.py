"""The mapping's life with the real miniupnpd: renewed, deleted on stop, re-made after the
router restarts (and forgot it). A short lifetime (4 s, renewed every 2 s) keeps it quick."""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.miniupnpd import MappingRouter
from stunmeshd.lab.topology import NatMode
from tests.prereq import require_root, require_tools

pytestmark = pytest.mark.root

LIFETIME = "4s"


@pytest.fixture(autouse=True)
def _prereq() -> None:
    require_root()
    require_tools("miniupnpd")


def mapped_count(mesh: MeshLab) -> int:
    return sum(1 for e in mesh.a.log_lines() if e.get("msg", "").startswith("port mapped"))


async def wait_for(predicate: object, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("condition not met")


async def started(mesh: MeshLab, protocol: str) -> MappingRouter:
    router = await mesh.lab.start_mapping_router(mesh.lab.a, {protocol})
    config = mesh.config_for(mesh.a, mesh.b)
    config["interfaces"][mesh.a.wg.ifname]["port_mapping_lifetime"] = LIFETIME
    mesh.write_config(mesh.a, config)
    await mesh.start_daemons()
    await mesh.wait_handshake(timeout=30)
    return router


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp"])
async def test_renewed_and_deleted_on_stop(protocol: str) -> None:
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await started(mesh, protocol)
        first = mapped_count(mesh)

        async def renewed_twice() -> bool:
            return mapped_count(mesh) >= first + 2

        await wait_for(renewed_twice, timeout=15)
        assert "dnat" in await router.rules()
        assert await mesh.lab.ping(mesh.lab.a, mesh.b.wg.tunnel_ip, count=3)
        assert await mesh.stop_daemon(mesh.a) == 0
        assert await router.rules() == ""  # the daemon deleted it on its way out
        assert "port mapping deleted" in mesh.a.log_text()


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp"])
async def test_mapped_again_after_the_router_restarts(protocol: str) -> None:
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await started(mesh, protocol)
        before = mapped_count(mesh)
        await router.reboot()  # every mapping forgotten

        async def rule_back() -> bool:
            return "dnat" in await router.rules() and mapped_count(mesh) > before

        await wait_for(rule_back, timeout=20)
        assert await mesh.lab.ping(mesh.lab.a, mesh.b.wg.tunnel_ip, count=5)


async def test_deleted_when_the_interface_goes() -> None:
    """WireGuard stops (its interface vanishes): its port is no longer WireGuard's, so the
    mapping is deleted while the daemon keeps running."""
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await started(mesh, "natpmp")
        await mesh.a.wg.stop()

        async def rule_gone() -> bool:
            return await router.rules() == ""

        await wait_for(rule_gone, timeout=15)
        assert "port mapping deleted" in mesh.a.log_text()
        assert mesh.a.process is not None and mesh.a.process.returncode is None
