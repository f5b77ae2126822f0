"""The port-mapping client against the real miniupnpd on the lab's natA (symmetric NAT).

Each protocol alone (the router offering only it): the parallel probe picks it, the mapping
forwards a datagram from the wan to WireGuard's port on hostA, and the delete removes the
router's rule.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from stunmeshd.lab.miniupnpd import MAPPED_PUBLIC_IP, MappingRouter
from stunmeshd.lab.topology import WG_PORT, Lab, NatMode
from stunmeshd.portmap.client import PortMapClient, find_gateway
from stunmeshd.portmap.machine import ALL_PROTOCOLS, Map, Protocol, Unmap
from tests.prereq import require_root, require_tools

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _prereq() -> None:
    require_root()
    require_tools("miniupnpd")


async def new_client() -> PortMapClient:
    gateway = await find_gateway()
    assert gateway is not None
    return PortMapClient(gateway)


async def probe_and_map(
    client: PortMapClient, lifetime: int
) -> tuple[Protocol | None, tuple[str, int, int]]:
    """In hostA: probe all three, map WireGuard's port with the winner, return both."""
    found = await client.probe(ALL_PROTOCOLS)
    assert found is not None
    return found, await client.map(Map(1, found, WG_PORT, lifetime, WG_PORT))


async def unmap(client: PortMapClient, protocol: Protocol, external_port: int) -> None:
    await client.unmap(Unmap(2, protocol, WG_PORT, external_port))


async def forwarded(lab: Lab, port: int) -> bool:
    """A datagram from the wan to the mapped endpoint reaches hostA's WireGuard port."""
    receiver = lab.a.host.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("0.0.0.0", WG_PORT))
    receiver.setblocking(False)
    sender = lab.wan.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(10):
            sender.sendto(b"through the mapping", (MAPPED_PUBLIC_IP, port))
            try:
                data = await asyncio.wait_for(loop.sock_recv(receiver, 100), 0.5)
            except TimeoutError:
                continue
            return data == b"through the mapping"
        return False
    finally:
        receiver.close()
        sender.close()


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp"])
async def test_each_protocol_alone_maps_wireguards_port(protocol: str) -> None:
    async with Lab(nat_a=NatMode.SYMMETRIC, coturn=False) as lab:
        router: MappingRouter = await lab.start_mapping_router(lab.a, {protocol})
        assert not await forwarded(lab, WG_PORT)  # control: the symmetric NAT drops it
        client = await lab.a.host.call(new_client)
        assert client.gateway.ip == lab.a.gateway_ip
        found, (ip, port, lifetime) = await lab.a.host.call(probe_and_map, client, 60)
        assert found == Protocol(protocol)
        assert ip == MAPPED_PUBLIC_IP and 1024 <= port <= 65535 and lifetime > 0
        assert f"dnat ip to {lab.a.lan_ip}:{WG_PORT}" in await router.rules()
        assert await forwarded(lab, port)
        await lab.a.host.call(unmap, client, Protocol(protocol), port)
        assert await router.rules() == ""
        assert not await forwarded(lab, port)
