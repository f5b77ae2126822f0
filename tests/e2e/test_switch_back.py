"""A peer that goes back to stunmesh-go reconnects without a restart; replays stay refused.

Real wireguard-go and nftables NAT in the lab. Host B first runs stunmeshd (records with
``ts``); then its daemon stops, its WireGuard moves to another port (a new public endpoint)
and its record becomes what stunmesh-go writes: the same sealed JSON without ``ts``. Host A's
daemon keeps running throughout (issue 12, part 3).
"""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd import crypto
from stunmeshd.lab.mesh import MeshLab, Node

pytestmark = pytest.mark.root

NEW_PORT = 51822


async def ping_until(mesh: MeshLab, node: Node, target: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await mesh.lab.ping(node.site, target, count=1, wait=0.5):
            return
    raise TimeoutError(f"no ping through the tunnel within {timeout} s")


def refusals(node: Node) -> list[str]:
    return [e["msg"] for e in node.log_lines() if "record refused" in e.get("msg", "")]


async def test_switch_back_to_stunmesh_go_reconnects_and_an_old_record_is_refused() -> None:
    async with MeshLab(store="dir", refresh_interval="2s") as mesh:
        a, b = mesh.a, mesh.b
        await mesh.start_daemons()
        await mesh.wait_handshake()
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=10)
        slot = mesh.record_path(b, a)
        stunmeshd_record = slot.read_text().strip()
        opened = crypto.open_record(stunmeshd_record, a.wg.private_key, b.wg.public_key)
        assert opened.ts is not None  # B ran stunmeshd: A has accepted a ts
        old_endpoint = opened.ipv4
        assert await a.peer_endpoint() == old_endpoint

        # B goes back to stunmesh-go: new port, a record without ts (stunmesh-go's bytes)
        await mesh.stop_daemon(b)
        await b.wg.wg("set", b.wg.ifname, "listen-port", str(NEW_PORT))
        new_endpoint = f"{b.site.public_ip}:{NEW_PORT}"  # B's NAT keeps the port
        go_record = crypto.EndpointRecord(ipv4=new_endpoint).to_json(with_ts=False)
        assert b'"ts"' not in go_record
        slot.write_text(crypto.seal(go_record, b.wg.private_key, a.wg.public_key) + "\n")

        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=30)  # traffic finds the path broken
        assert await a.peer_endpoint() == new_endpoint
        assert a.process is not None and a.process.returncode is None  # never restarted

        # someone puts B's old stunmeshd record back: refused, the tunnel stays where it is
        before = len(refusals(a))
        slot.write_text(stunmeshd_record + "\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len(refusals(a)) == before:
            assert loop.time() < deadline, "A never read the replayed record"
            await asyncio.sleep(0.1)
        assert "replayed" in refusals(a)[-1]
        assert await a.peer_endpoint() == new_endpoint
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=5)
