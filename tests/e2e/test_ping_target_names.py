"""ping.target as a host name (issue 12, form 6), with the real daemons in the lab.

stunmesh-go resolves a ping target as IPv4 when its monitor starts and leaves the peer
unmonitored when the name does not resolve. stunmeshd looks the name up in the resolver
thread (the event loop never waits on it), again every few minutes, and a name that does not
resolve costs only the monitoring: the peer keeps its tunnel.
"""

from __future__ import annotations

import asyncio

import pytest

from stunmeshd.health import resolve_ping_target
from stunmeshd.lab.mesh import MeshLab

pytestmark = pytest.mark.root


async def test_resolve_ping_target() -> None:
    assert await resolve_ping_target("198.51.100.7", 1.0) == "198.51.100.7"
    assert await resolve_ping_target("2001:db8::1", 1.0) == "2001:db8::1"
    assert await resolve_ping_target("localhost", 5.0) == "127.0.0.1"  # IPv4, as stunmesh-go


async def test_unresolvable_target_leaves_the_peer_running_unmonitored() -> None:
    async with MeshLab() as mesh:
        a, b = mesh.a, mesh.b
        ping_a = {"enabled": True, "target": "no-such-peer.invalid", "interval": "1s"}
        mesh.write_config(a, mesh.config_for(a, b, ping=ping_a))
        ping_b = {"enabled": True, "target": "localhost", "interval": "1s"}
        mesh.write_config(b, mesh.config_for(b, a, ping=ping_b))
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=30)
        warning = await mesh.wait_log(a, "ping target does not resolve", timeout=30)
        assert warning["level"] == "warning" and "no-such-peer.invalid" in warning["msg"]
        await asyncio.sleep(3)  # several ping intervals: B's name resolves and answers
        assert "ping target does not resolve" not in b.log_text()
        assert "went unanswered" not in b.log_text()
        assert await mesh.lab.ping(a.site, b.wg.tunnel_ip, count=1)
        assert a.process is not None and a.process.returncode is None
        assert b.process is not None and b.process.returncode is None
        # the warning is said once, not every interval
        assert a.log_text().count("ping target does not resolve") == 1
