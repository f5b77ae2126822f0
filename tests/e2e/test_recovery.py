"""Never restart: the daemons keep running while the network and the config change under them.

Real wireguard-go, nftables NAT and conntrack, OpenDHT (whose listen API tells a daemon at
once when its peer republishes) in the lab.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time

import pytest
from nacl.public import PrivateKey

from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.topology import NatMode

pytestmark = pytest.mark.root


async def ping_until(mesh: MeshLab, node: Node, target: str, timeout: float) -> float:
    """Ping through the tunnel until one passes; returns the loop time it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await mesh.lab.ping(node.site, target, count=1, wait=0.5):
            return loop.time()
    raise TimeoutError(f"no ping through the tunnel within {timeout} s")


def log_count(node: Node, text: str) -> int:
    return sum(1 for e in node.log_lines() if text in e.get("msg", ""))


async def test_wireguard_restart_with_a_new_port_is_adopted() -> None:
    async with MeshLab() as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        a, b = mesh.a, mesh.b
        await a.wg.stop()  # the interface disappears with wireguard-go
        await mesh.wait_log(a, "device vanished", timeout=10)
        a.wg = await mesh.lab.start_wireguard(
            a.site, listen_port=51821, private_key=a.wg.private_key
        )
        await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=30)
        assert log_count(a, "device adopted") == 2
        # B now points at A's new port (masquerade keeps 51821)
        assert await b.peer_endpoint() == "198.51.100.10:51821"
        assert a.process is not None and a.process.returncode is None


async def test_nat_remapping_our_port_recovers() -> None:
    async with MeshLab(nat_a=NatMode.PORT_CHANGING) as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        a, b = mesh.a, mesh.b
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=10)
        await mesh.lab.set_nat(a.site, NatMode.PORT_CHANGING, snat_port=40001)
        await mesh.lab.flush_conntrack(a.site)
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=30)
        assert await b.peer_endpoint() == "198.51.100.10:40001"  # B learned A's new mapping


@pytest.mark.parametrize("mover", ["a", "b"])
async def test_a_listen_port_change_is_recovered_by_the_daemons_not_by_a_keepalive(
    mover: str,
) -> None:
    """``wg set wg0 listen-port N`` under a running daemon; the other side pings.

    The moved side has nothing to send (its peer's packets go to the old port), so its NAT
    stays shut to the peer until it sends from the new port: its daemon must make WireGuard
    send at once. The moved peer's keepalive is set to 120 s, so waiting for it cannot pass.
    """
    async with MeshLab(nat_a=NatMode.PORT_CHANGING) as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        moved = mesh.nodes[mover]
        other = mesh.b if mover == "a" else mesh.a
        await ping_until(mesh, other, moved.wg.tunnel_ip, timeout=10)
        await moved.wg.wg(
            "set", "wg0", "peer", other.wg.public_key_b64, "persistent-keepalive", "120"
        )
        await moved.wg.wg("set", "wg0", "listen-port", "51832")
        await ping_until(mesh, other, moved.wg.tunnel_ip, timeout=15)
        assert await other.peer_endpoint() == f"{moved.site.public_ip}:51832"
        for node in (mesh.a, mesh.b):
            assert node.process is not None and node.process.returncode is None


async def test_a_peer_added_just_after_its_interface_was_recreated_is_fetched_at_once() -> None:
    """``ip link del wg0``, wg0 made again, its peer added only after the daemon read it.

    The store here cannot notify (the directory store) and the refresh interval is 10 min,
    so only fetching the newly seen peer at once brings the tunnel back; B sent no data, so
    its WireGuard does not start a handshake by itself either.
    """
    async with MeshLab(store="dir") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        a, b = mesh.a, mesh.b
        lines = len(a.log_lines())
        await a.site.host.run("ip", "link", "del", a.wg.ifname)
        await a.wg.stop()
        a.wg = await mesh.lab.start_wireguard(  # same key and port, no peer yet
            a.site, listen_port=a.wg.listen_port, private_key=a.wg.private_key
        )
        await mesh.wait_log(a, "device adopted", after=lines)  # read without its peer
        await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")
        await ping_until(mesh, a, b.wg.tunnel_ip, timeout=10)


async def test_address_change_triggers_rediscovery_at_once() -> None:
    async with MeshLab() as mesh:  # refresh every 10 min; nothing else is due
        await mesh.start_daemons()
        await mesh.wait_handshake()
        await asyncio.sleep(1)
        before = log_count(mesh.a, "rediscovered")
        await mesh.a.site.host.run("ip", "addr", "add", "198.18.1.3/24", "dev", "eth0")
        entry = await mesh.wait_log(mesh.a, "network changed", timeout=5)
        assert "address added on eth0" in entry["msg"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while log_count(mesh.a, "rediscovered") == before:
            assert loop.time() < deadline, "no rediscovery after the address change"
            await asyncio.sleep(0.05)


def fake_peer() -> bytes:
    return bytes(PrivateKey.generate().public_key)


async def test_reload_adds_and_removes_peers_without_disturbing_others() -> None:
    async with MeshLab(store="dir") as mesh:
        a, b = mesh.a, mesh.b
        second, third = fake_peer(), fake_peer()
        await a.wg.add_peer(second, "198.19.0.20/32")
        await a.wg.add_peer(third, "198.19.0.30/32")
        config = mesh.config_for(a, b)
        peers = config["interfaces"][a.wg.ifname]["peers"]
        peers["second"] = {"public_key": base64.b64encode(second).decode(), "plugin": "lab"}
        mesh.write_config(a, config)
        await mesh.start_daemons()
        await mesh.wait_handshake()
        await mesh.wait_log(a, "peer added iface=wg0 peer=second")
        applied_before = log_count(a, "endpoint applied iface=wg0 peer=hostB")
        handshake_before = await a.latest_handshake()

        del peers["second"]
        peers["third"] = {"public_key": base64.b64encode(third).decode(), "plugin": "lab"}
        mesh.write_config(a, config)
        assert a.process is not None
        a.process.send_signal(signal.SIGHUP)
        await mesh.wait_log(a, "configuration reloaded")
        await mesh.wait_log(a, "peer no longer managed (WireGuard keeps it) iface=wg0 peer=second")
        await mesh.wait_log(a, "peer added iface=wg0 peer=third")
        await asyncio.sleep(2)
        # hostB was left alone: not re-applied, same session, tunnel up
        assert log_count(a, "endpoint applied iface=wg0 peer=hostB") == applied_before
        assert log_count(a, "peer no longer managed (WireGuard keeps it) iface=wg0 peer=hostB") == 0
        assert await a.latest_handshake() == handshake_before
        assert await mesh.lab.ping(a.site, b.wg.tunnel_ip)


async def test_broken_new_config_is_refused_and_the_old_one_keeps_running() -> None:
    async with MeshLab(store="dir") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        a = mesh.a
        good = a.config_path.read_text()
        # a file stunmesh-go refuses too (a peer without public_key is only disabled)
        a.config_path.write_text(good.replace("protocol: ipv4", "protocol: ipv5", 1))
        assert a.process is not None
        a.process.send_signal(signal.SIGHUP)
        entry = await mesh.wait_log(a, "reload refused")
        assert "protocol" in entry["msg"] and "ipv5" in entry["msg"]
        assert str(a.config_path) in entry["msg"]
        started = time.monotonic()
        while time.monotonic() - started < 2:
            assert a.process.returncode is None
            await asyncio.sleep(0.2)
        assert await mesh.lab.ping(a.site, mesh.b.wg.tunnel_ip)
        assert log_count(a, "configuration reloaded") == 0
