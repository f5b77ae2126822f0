"""The peer ping monitor with the real daemons in the lab: a ping in flight holds nothing up.

An unanswered ping takes its whole timeout (before the tunnel exists every ping is
unanswered). The worker that fetches, applies and polls must not wait for it: once it did,
and a daemon whose peer published a moment after it started applied the peer's endpoint
only when its first ping timed out.
"""

from __future__ import annotations

import pytest

from stunmeshd.lab.mesh import MeshLab

pytestmark = pytest.mark.root

NOBODY = "198.19.0.99"  # in the tunnel's subnet, no peer's allowed IPs: never answered


async def test_an_unanswered_ping_does_not_hold_back_the_tunnel() -> None:
    async with MeshLab() as mesh:
        a, b = mesh.a, mesh.b
        # every ping hangs for a minute; the first goes out 0.2 s after start, before the
        # later daemon's record can have reached the earlier one
        ping = {"enabled": True, "target": NOBODY, "interval": "200ms", "timeout": "60s"}
        mesh.write_config(a, mesh.config_for(a, b, ping=ping))
        mesh.write_config(b, mesh.config_for(b, a, ping=ping))
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=30)  # well inside the first ping's minute
        assert await mesh.lab.ping(a.site, b.wg.tunnel_ip, count=3)
        assert "went unanswered" not in a.log_text() + b.log_text()
