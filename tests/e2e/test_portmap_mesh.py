"""Issue 14 end to end: hostA behind a symmetric NAT whose router maps ports (miniupnpd).

Real wireguard-go, real miniupnpd, real stunmeshd on both hosts. With the router offering
one protocol alone, hostA's daemon maps WireGuard's port with it, publishes the mapped
endpoint and the tunnel forms; with ``port_mapping: off`` (the control) it does not.
"""

from __future__ import annotations

import pytest

from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.miniupnpd import MAPPED_PUBLIC_IP
from stunmeshd.lab.topology import NatMode
from tests.prereq import require_root, require_tools

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _prereq() -> None:
    require_root()
    require_tools("miniupnpd")


def set_port_mapping(mesh: MeshLab, node: Node, other: Node, **keys: str) -> None:
    config = mesh.config_for(node, other)
    config["interfaces"][node.wg.ifname].update(keys)
    mesh.write_config(node, config)


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp"])
async def test_each_protocol_alone_forms_the_tunnel(protocol: str) -> None:
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await mesh.lab.start_mapping_router(mesh.lab.a, {protocol})
        await mesh.start_daemons()
        mapped = await mesh.wait_log(mesh.a, "port mapped", timeout=20)
        assert f"protocol={protocol}" in mapped["msg"]
        await mesh.wait_handshake(timeout=30)
        assert (await mesh.b.peer_endpoint()).startswith(f"{MAPPED_PUBLIC_IP}:")
        assert await mesh.lab.ping(mesh.lab.a, mesh.b.wg.tunnel_ip, count=3)
        published = await mesh.wait_log(mesh.a, "publishing port-mapping endpoint")
        assert "address-and-port-dependent" in published["msg"]
        assert f"dnat ip to {mesh.lab.a.lan_ip}:51820" in await router.rules()


async def test_port_mapping_off_does_not_form_the_tunnel() -> None:
    """The control: same lab and router, ``port_mapping: off`` on hostA: no mapping, no tunnel."""
    async with MeshLab(nat_a=NatMode.SYMMETRIC, store="dir") as mesh:
        router = await mesh.lab.start_mapping_router(mesh.lab.a)
        config = mesh.config_for(mesh.a, mesh.b)
        config["interfaces"][mesh.a.wg.ifname]["port_mapping"] = "off"
        mesh.write_config(mesh.a, config)
        await mesh.start_daemons()
        reason = await mesh.wait_log(mesh.a, "no handshake", timeout=40)
        assert "symmetric" in reason["msg"]
        assert await mesh.a.latest_handshake() == 0
        assert await router.rules() == ""
        assert "port mapped" not in mesh.a.log_text()
