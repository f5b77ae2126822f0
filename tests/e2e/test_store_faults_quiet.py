"""Store faults while the tunnel works: no state flapping, one warning, the tunnel stays.

Issue 13, item 5: during store faults the peer went ``connected`` -> failed -> ``connected``
every cycle, with an info ``handshake`` line each time, although the tunnel never broke.
Real wireguard-go, nftables NAT and the directory store (a shell plugin) in the lab.
"""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.lab.mesh import MeshLab, Node

pytestmark = pytest.mark.root

CYCLES = 4  # refresh cycles of fault per kind (refresh_interval 2 s)


def messages(node: Node, start: str) -> list[str]:
    return [e["msg"] for e in node.log_lines() if e.get("msg", "").startswith(start)]


async def test_store_faults_change_no_state_and_warn_once_a_minute() -> None:
    async with MeshLab(store="dir", refresh_interval="2s") as mesh:
        a, b = mesh.a, mesh.b
        await mesh.start_daemons()
        await mesh.wait_handshake()
        await mesh.wait_log(a, "handshake iface=", timeout=10)
        endpoint = await a.peer_endpoint()
        slot = mesh.record_path(b, a)
        await asyncio.sleep(3)  # settled: both sides connected
        handshakes = len(messages(a, "handshake iface="))

        # 1. the record is gone from the store (expired, deleted: "no record")
        await mesh.stop_daemon(b)  # B would rewrite it
        slot.unlink()
        await asyncio.sleep(2 * CYCLES)
        assert len(messages(a, "handshake iface=")) == handshakes  # no flapping
        # 2. the store answers with something that is not a record
        slot.write_text("this is not a record\n")
        await asyncio.sleep(2 * CYCLES)
        refused = messages(a, "record refused")

        assert len(messages(a, "handshake iface=")) == handshakes  # still no flapping
        assert len(refused) == 1 and "not hex" in refused[0]  # said once, not every cycle
        assert await a.peer_endpoint() == endpoint  # the good endpoint stays
        assert await mesh.lab.ping(a.site, b.wg.tunnel_ip, count=1, wait=2)  # tunnel kept
