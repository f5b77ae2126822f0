"""Issue 14, part 6: a router that lies — it grants the mapping, nothing arrives through it.

hostA is behind a symmetric NAT whose router (the real miniupnpd) grants PCP mappings but,
made to lie by the lab, drops everything they forward. hostA's daemon publishes the mapping,
health finds that no peer reaches it, it is mapped again once, and when the router grants it
again and it still carries nothing it is deleted at the router, not asked for again, and STUN's
endpoint is published with the reason said. (The tunnel cannot form: behind this NAT nothing
but an honest mapping lets a peer in, as the ``port_mapping: off`` control in
test_portmap_mesh.py shows; the honest-router tests there and in test_portmap_lifecycle.py are
the control that a working mapping is kept.)
"""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.miniupnpd import MAPPED_PUBLIC_IP
from stunmeshd.lab.topology import NatMode
from stunmeshd.portmap.machine import NOT_FORWARDING_GRACE
from tests.prereq import require_root, require_tools

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _prereq() -> None:
    require_root()
    require_tools("miniupnpd")


async def test_a_mapping_that_forwards_nothing_is_dropped_and_not_asked_for_again() -> None:
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await mesh.lab.start_mapping_router(mesh.lab.a, {"pcp"})
        await router.lie()
        await mesh.start_daemons()
        await mesh.wait_log(mesh.a, "publishing port-mapping endpoint", timeout=20)
        assert "dnat" in await router.rules()

        verdict = await mesh.wait_log(mesh.a, "port mapping not forwarding", timeout=150)
        endpoint = f"{MAPPED_PUBLIC_IP}:51820"
        assert f"router mapped {endpoint} (pcp) but nothing arrived through it" in verdict["msg"]
        assert "not mapping for 10 min" in verdict["msg"]
        msgs = [e.get("msg", "") for e in mesh.a.log_lines()]
        after = next(i for i, m in enumerate(msgs) if "port mapping not forwarding" in m)
        # the rule: mapped, failed, mapped again, failed again
        assert sum(m.startswith("port mapped") for m in msgs[:after]) >= 2
        await mesh.wait_log(mesh.a, "publishing stun endpoint", timeout=10, after=after)
        await mesh.wait_log(mesh.a, "port mapping deleted", timeout=10, after=after)
        assert await router.rules() == ""  # deleted at the router

        await asyncio.sleep(10)  # health keeps failing: nothing is asked of the router again
        later = [e.get("msg", "") for e in mesh.a.log_lines()[after:]]
        assert not any(m.startswith("port mapped") for m in later)
        assert await router.rules() == ""
        assert await mesh.a.latest_handshake() == 0


async def test_an_honest_routers_mapping_is_kept() -> None:
    """The control: the same lab with an honest router. Health's early reports (WireGuard
    sends before the peer has our record) are judged at the end of the grace and dropped,
    because a handshake came through the mapping meanwhile."""
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await mesh.lab.start_mapping_router(mesh.lab.a, {"pcp"})
        await mesh.start_daemons()
        await mesh.wait_log(mesh.a, "publishing port-mapping endpoint", timeout=20)
        await mesh.wait_handshake(timeout=30)
        await asyncio.sleep(2 * NOT_FORWARDING_GRACE + 5)  # past the verdict's earliest time
        assert "not forwarding" not in mesh.a.log_text()
        assert "dnat" in await router.rules()
        assert "publishing stun endpoint" not in mesh.a.log_text()
        assert await mesh.lab.ping(mesh.lab.a, mesh.b.wg.tunnel_ip, count=3)
