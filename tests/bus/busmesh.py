"""Two real stunmeshd daemons in the lab, each on its own private system bus (host A's with a
real polkitd): the end-to-end and stress tests of the bus layer use it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from dbus_fast.aio import MessageBus

from stunmeshd.bus.names import PEER_IFACE
from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.topology import NatMode
from stunmeshd.model import PeerState
from tests.bus.helpers import managed_objects
from tests.bus.sysbus import PrivateBus

SPARE_TOKEN = "cf-spare-token-7c1d2e3f4a5b-NEVER-ON-THE-BUS"


@dataclass
class BusMesh:
    mesh: MeshLab
    bus_a: PrivateBus
    bus_b: PrivateBus

    def config_a(self, **overrides: Any) -> dict[str, Any]:
        config = self.mesh.config_for(self.mesh.a, self.mesh.b)
        # a configured but unused store with a token: it must never reach the bus
        config["plugins"]["spare"] = {
            "type": "builtin",
            "name": "cloudflare",
            "zone": "example.com",
            "token": SPARE_TOKEN,
        }
        config.update(overrides)
        return config

    async def start(self, node: Node, bus: PrivateBus) -> None:
        await self.mesh.start_daemon(node, "--bus", bus.address)


@asynccontextmanager
async def bus_mesh_lab(**mesh_kw: Any) -> AsyncIterator[BusMesh]:
    async with PrivateBus() as bus_a, PrivateBus() as bus_b:
        await bus_a.start_polkit()
        mesh_kw.setdefault("nat_a", NatMode.PORT_CHANGING)
        mesh_kw.setdefault("nat_b", NatMode.ENDPOINT_INDEPENDENT)
        async with MeshLab(**mesh_kw) as mesh:
            bm = BusMesh(mesh, bus_a, bus_b)
            mesh.write_config(mesh.a, bm.config_a())
            yield bm


async def wait_objects(bus: MessageBus, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    """Poll GetManagedObjects until ``predicate(objects)`` holds (the last tree on failure)."""
    objects: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                objects = await managed_objects(bus)
                if predicate(objects):
                    return objects
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout} s; the tree: {objects}") from None


def by_iface(objects: dict[str, Any], iface: str) -> dict[str, dict[str, Any]]:
    return {p: v[iface] for p, v in objects.items() if iface in v}


def connected(objects: dict[str, Any]) -> bool:
    peers = by_iface(objects, PEER_IFACE)
    return bool(peers) and all(p["State"] == PeerState.CONNECTED for p in peers.values())
