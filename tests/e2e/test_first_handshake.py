"""The first handshake after both daemons start together (real wireguard-go, nftables NATs).

Two WireGuards that send their first handshake initiation at the same moment each answer the
other's and refuse the answer to their own; WireGuard tries again only 5 s later. So a peer
still without a handshake a moment after its first endpoint is re-created (a fresh initiation)
by one side only, the lower public key's, so the two never collide again.
"""

from __future__ import annotations

import pytest

from stunmeshd.lab.mesh import MeshLab

pytestmark = pytest.mark.root

RECREATED = "peer re-created for a fresh initiation"


def cut(mesh: MeshLab) -> str:
    """nftables input for the wan: no UDP between the sites (STUN and OpenDHT still work)."""
    sites = ", ".join(node.site.public_ip for node in (mesh.a, mesh.b))
    return f"""
table ip smdcut {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    ip saddr {{ {sites} }} ip daddr {{ {sites} }} meta l4proto udp drop
  }}
}}
"""


async def test_only_the_lower_key_re_creates_a_silent_peer_and_only_once() -> None:
    async with MeshLab() as mesh:
        lower, upper = sorted((mesh.a, mesh.b), key=lambda node: node.wg.public_key)
        await mesh.lab.wan.run("nft", "-f", "-", input=cut(mesh).encode())
        await mesh.start_daemons()
        for node in (lower, upper):
            await mesh.wait_log(node, "endpoint applied", timeout=30)
        await mesh.wait_log(lower, RECREATED, timeout=10)
        await mesh.lab.wan.run("nft", "delete", "table", "ip", "smdcut")
        await mesh.wait_handshake(timeout=30)  # WireGuard's own retries after the cut
        assert lower.log_text().count(RECREATED) == 1
        assert RECREATED not in upper.log_text()
        assert await mesh.lab.ping(lower.site, upper.wg.tunnel_ip, count=3)
