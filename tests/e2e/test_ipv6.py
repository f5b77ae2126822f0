"""IPv6 and dual stack, end to end: two stunmeshd daemons in the dual-stack lab.

IPv6 in the lab is routed, not translated, but each site router only lets replies in (the
usual IPv6 firewall), so WireGuard must punch it exactly like a NAT. Real wireguard-go,
coturn (answering over IPv6 too), nftables and OpenDHT / the directory store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stunmeshd import crypto
from stunmeshd.bus.names import DEVICE_IFACE, PEER_IFACE
from stunmeshd.discovery import StunSettings, discover_family
from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.netns import LabError, Namespace
from stunmeshd.lab.topology import WAN_A_IP6, WAN_B_IP, WAN_B_IP6, Lab
from stunmeshd.model import PeerState
from tests.bus.helpers import managed_objects
from tests.bus.sysbus import PrivateBus

pytestmark = pytest.mark.root

# the wire-format vector keys: A priv = 01×32, B priv = 02×32
PRIV_A, PRIV_B = bytes([1]) * 32, bytes([2]) * 32
A_V4, B_V4 = "198.51.100.10:40000", "203.0.113.20:51820"  # through A's port-changing NAT
A_V6, B_V6 = "[2001:db8:1::2]:51820", "[2001:db8:2::2]:51820"  # routed: the LAN addresses


async def test_lab_firewall_lets_only_replies_in() -> None:
    """The bed itself: IPv6 is routed end to end, but a site lets in only replies; coturn
    answers STUN over IPv6 through the firewall with the host's own address."""
    async with Lab(ipv6=True) as lab:
        assert lab.a.lan_ip6 == "2001:db8:1::2" and lab.b.lan_ip6 == "2001:db8:2::2"
        # out through its own router to the wan, and to the far router, works
        assert await lab.ping(lab.b, WAN_B_IP6)
        assert await lab.ping(lab.a, lab.b.router_ip6)
        # nothing unsolicited gets into a site, from the wan or the other site
        assert not await lab.ping(lab.a, lab.b.lan_ip6)
        assert not await _wan_reaches(lab, lab.b.lan_ip6)
        # a UDP flow B opened towards A lets A's answers in, and only those
        port = 47000
        with (
            _udp(lab.a.host, socket.AF_INET6, port) as sock_a,
            _udp(lab.b.host, socket.AF_INET6, port) as sock_b,
        ):
            sock_a.sendto(b"early", (lab.b.lan_ip6, port))  # dropped at B's router
            sock_b.sendto(b"punch", (lab.a.lan_ip6, port))  # opens B's router for A ...
            assert await _recv(sock_a) == b"punch"  # ... and is a reply to A's "early"
            sock_a.sendto(b"answer", (lab.b.lan_ip6, port))
            assert await _recv(sock_b) == b"answer"  # the first thing B ever got
        # IPv4 is still there and still translated
        assert await lab.ping(lab.b, WAN_B_IP)
        settings = StunSettings(tuple(lab.stun_servers), sock_factory=lab.a.host.socket)
        found, _ = await discover_family(settings, port=51820, family=socket.AF_INET6)
        assert found.mapped == (lab.a.lan_ip6, 51820)  # XOR-MAPPED-ADDRESS, no NAT on IPv6
        assert found.server == (WAN_A_IP6, 3478)  # the IPv4 servers were skipped
        assert found.other_address == (WAN_B_IP6, 3479)  # RFC 5780 alternate, IPv6 too
        # the cut stops forwarding between the sites, not the sites' reach to the wan
        await lab.set_ipv6_path(False)
        assert not await lab.ping(lab.a, lab.b.router_ip6)
        assert await lab.ping(lab.a, lab.a.wan_ip6)
        await lab.set_ipv6_path(True)
        assert await lab.ping(lab.a, lab.b.router_ip6)


async def test_ipv6_only_pair_connects_through_the_firewalls() -> None:
    """``protocol: ipv6`` on both sides: STUN over IPv6, records with only an ipv6 endpoint
    (through OpenDHT reached over IPv6), tunnel over IPv6 — with IPv4 forwarding off in the
    wan, so nothing can have gone over IPv4."""
    async with MeshLab(protocol="ipv6", peer_protocol="ipv6") as mesh:
        assert all(url.startswith("http://[2001:db8:") for url in mesh.dht_urls)
        await mesh.lab.wan.sysctl("net.ipv4.ip_forward", "0")
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=20)
        assert await mesh.a.peer_endpoint() == B_V6
        assert await mesh.b.peer_endpoint() == A_V6
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
        discovered = await mesh.wait_log(mesh.a, "public endpoint")
        assert f"endpoints={A_V6} " in discovered["msg"]  # IPv6 only, RFC 5952, bracketed
        applied = await mesh.wait_log(mesh.b, "endpoint applied")
        assert applied["msg"].endswith(f"endpoint={A_V6}")


async def test_dual_stack_record_is_stunmesh_go_json_and_prefer_ipv6_uses_ipv6() -> None:
    """A dual-stack record opens with the vector keys to stunmesh-go's exact JSON (plus
    stunmeshd's ``ts`` after it), and ``prefer_ipv6`` peers connect over IPv6."""
    async with (
        PrivateBus() as bus,
        MeshLab(
            keys={"a": PRIV_A, "b": PRIV_B},
            store="dir",
            protocol="dualstack",
            peer_protocol="prefer_ipv6",
        ) as mesh,
    ):
        await asyncio.gather(
            mesh.start_daemon(mesh.a), mesh.start_daemon(mesh.b, "--bus", bus.address)
        )
        await mesh.wait_handshake(timeout=20)
        assert await mesh.a.peer_endpoint() == B_V6
        assert await mesh.b.peer_endpoint() == A_V6
        # the same RFC 5952 strings on D-Bus (B's daemon)
        device, peer = await _bus_view(bus, lambda d, p: p["State"] == PeerState.CONNECTED)
        assert device["PublicEndpoints"] == [B_V4, B_V6]
        assert (peer["Endpoint"], peer["DiscoveredEndpoint"]) == (A_V6, A_V6)

        for writer, reader, v4, v6 in ((mesh.a, mesh.b, A_V4, A_V6), (mesh.b, mesh.a, B_V4, B_V6)):
            sealed = mesh.record_path(writer, reader).read_text().strip()
            own_priv = PRIV_B if reader is mesh.b else PRIV_A
            plaintext = crypto.open_sealed(sealed, own_priv, writer.wg.public_key).decode()
            go_json = json.dumps({"ipv4": v4, "ipv6": v6}, separators=(",", ":"))
            assert go_json == f'{{"ipv4":"{v4}","ipv6":"{v6}"}}'
            assert re.fullmatch(re.escape(go_json[:-1]) + r',"ts":\d+\}', plaintext), plaintext
            assert list(json.loads(plaintext)) == ["ipv4", "ipv6", "ts"]

        discovered = await mesh.wait_log(mesh.a, "public endpoint")
        assert f"endpoints={A_V4},{A_V6} " in discovered["msg"]


async def test_prefer_ipv6_falls_back_to_ipv4_when_the_ipv6_path_is_cut() -> None:
    """The IPv6 path between the sites breaks while the tunnel carries traffic: both sides
    notice, re-fetch, and move to the peer's IPv4 endpoint; the tunnel works again."""
    async with MeshLab(store="dir", protocol="dualstack", peer_protocol="prefer_ipv6") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=20)
        assert await mesh.a.peer_endpoint() == B_V6
        assert await mesh.b.peer_endpoint() == A_V6

        await mesh.lab.set_ipv6_path(False)
        await _traffic_until(mesh, lambda: _endpoints_are(mesh, B_V4, A_V4), timeout=40)
        for node in (mesh.a, mesh.b):
            broken = await mesh.wait_log(node, "path broken", timeout=1)
            assert broken["level"] == "warning"
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
        assert await mesh.lab.ping(mesh.b.site, mesh.a.wg.tunnel_ip, count=3)
        # discovery still finds the IPv6 endpoint (the wan is reachable): the family is
        # avoided because its path failed, not because the record lost it
        assert _last_endpoints(mesh.a) == f"{A_V4},{A_V6}"


async def test_prefer_ipv6_without_an_ipv6_path_settles_on_ipv4() -> None:
    """No IPv6 path between the sites from the start: the IPv6 endpoints never handshake
    (handshake initiations go out, nothing comes back), so both sides move to the peer's
    IPv4 endpoint, say why, and connect — well before the 15 s no-handshake verdict."""
    async with MeshLab(store="dir", protocol="dualstack", peer_protocol="prefer_ipv6") as mesh:
        await mesh.lab.set_ipv6_path(False)
        await mesh.start_daemons()
        first = await mesh.wait_log(mesh.a, "endpoint applied")
        assert first["msg"].endswith(f"endpoint={B_V6}")  # IPv6 is tried first
        await mesh.wait_handshake(timeout=40)
        assert await mesh.a.peer_endpoint() == B_V4
        assert await mesh.b.peer_endpoint() == A_V4
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
        for node in (mesh.a, mesh.b):
            why = [
                e
                for e in node.log_lines()
                if e["level"] == "warning"
                and ("path broken" in e["msg"] or "no handshake" in e["msg"])
            ]
            assert why, node.log_text()[-3000:]


async def test_dual_stack_host_without_ipv6_uplink_publishes_ipv4_and_connects() -> None:
    """Host A has no IPv6 route out: its IPv6 discovery fails alone (a warning, not an error),
    its record carries only ipv4, B's ``prefer_ipv6`` takes that, and both end up on IPv4."""
    async with MeshLab(store="dir", protocol="dualstack", peer_protocol="prefer_ipv6") as mesh:
        await mesh.a.site.host.run("ip", "-6", "route", "del", "::/0")
        await mesh.start_daemons()
        partial = await mesh.wait_log(mesh.a, "discovery partly failed")
        assert partial["level"] == "warning" and "ipv6:" in partial["msg"]
        await mesh.wait_handshake(timeout=45)  # today A first tries B's IPv6 for 15 s
        sealed = mesh.record_path(mesh.a, mesh.b).read_text().strip()
        plaintext = crypto.open_sealed(sealed, mesh.b.wg.private_key, mesh.a.wg.public_key)
        assert re.fullmatch(rf'\{{"ipv4":"{re.escape(A_V4)}","ts":\d+\}}', plaintext.decode())
        assert await mesh.b.peer_endpoint() == A_V4
        assert await _wait_endpoint(mesh.a, B_V4, timeout=30)
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
        assert mesh.a.process is not None and mesh.a.process.returncode is None


async def test_dual_stack_host_without_ipv6_uplink_stays_on_ipv4() -> None:
    """Once on IPv4 the tunnel stays there while this host's IPv6 is still broken (its own
    IPv6 discovery fails every cycle): no switch back to an IPv6 path that cannot work."""
    async with MeshLab(
        store="dir", protocol="dualstack", peer_protocol="prefer_ipv6", refresh_interval="10s"
    ) as mesh:
        await mesh.a.site.host.run("ip", "-6", "route", "del", "::/0")
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=45)
        assert await _wait_endpoint(mesh.a, B_V4, timeout=30)
        loop = asyncio.get_running_loop()
        until = loop.time() + 150  # past BAD_FAMILY_TTL (120 s) and a few refreshes
        while loop.time() < until:
            assert await mesh.a.peer_endpoint() == B_V4
            assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=2)
            await asyncio.sleep(3)


async def test_peer_asking_for_ipv6_from_an_ipv4_only_record_fails_clearly() -> None:
    """A publishes IPv4 only; B's peer wants ``ipv6``: B says exactly why (log and the peer's
    LastError) and keeps running; nothing is configured in WireGuard."""
    async with PrivateBus() as bus, MeshLab(store="dir", ipv6=True) as mesh:
        mesh.write_config(mesh.b, mesh.config_for(mesh.b, mesh.a, peer_protocol="ipv6"))
        await asyncio.gather(
            mesh.start_daemon(mesh.a), mesh.start_daemon(mesh.b, "--bus", bus.address)
        )
        why = "peer asks for ipv6 but its record has no ipv6 endpoint"
        entry = await mesh.wait_log(mesh.b, why, timeout=20)
        assert entry["level"] == "warning"
        assert "record refused" in entry["msg"]
        _device, peer = await _bus_view(bus, lambda d, p: why in p["LastError"])
        assert peer["State"] == PeerState.FAILED
        assert peer["Endpoint"] == ""
        assert await mesh.b.peer_endpoint() == ""
        assert mesh.b.process is not None and mesh.b.process.returncode is None


# ---- helpers --------------------------------------------------------------------------------


async def _bus_view(
    bus: PrivateBus,
    ready: Callable[[dict[str, Any], dict[str, Any]], bool],
    timeout: float = 20.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (only) Device's and Peer's properties, once ``ready(device, peer)`` holds."""
    client = await bus.connect()
    try:
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(Exception):  # the daemon may not be on the bus yet
                    objects = await managed_objects(client)
                    devices = [v[DEVICE_IFACE] for v in objects.values() if DEVICE_IFACE in v]
                    peers = [v[PEER_IFACE] for v in objects.values() if PEER_IFACE in v]
                    if len(devices) == len(peers) == 1 and ready(devices[0], peers[0]):
                        return devices[0], peers[0]
                await asyncio.sleep(0.1)
    finally:
        client.disconnect()


async def _wan_reaches(lab: Lab, target: str) -> bool:
    try:
        await lab.wan.run("ping", "-n", "-q", "-c", "1", "-W", "1", target, timeout=10)
    except LabError:
        return False
    return True


class _udp:
    """A bound non-blocking UDP socket inside a lab namespace, closed on exit."""

    def __init__(self, ns: Namespace, family: int, port: int) -> None:
        self.sock = ns.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))

    def __enter__(self) -> socket.socket:
        return self.sock

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


async def _recv(sock: socket.socket, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), timeout)
    return data


async def _endpoints_are(mesh: MeshLab, a_sees: str, b_sees: str) -> bool:
    return (await mesh.a.peer_endpoint(), await mesh.b.peer_endpoint()) == (a_sees, b_sees)


async def _traffic_until(
    mesh: MeshLab, done: Callable[[], Awaitable[bool]], timeout: float
) -> None:
    """Ping through the tunnel both ways (as applications would) until ``done()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await done():
        assert loop.time() < deadline, [n.log_text()[-3000:] for n in mesh.nodes.values()]
        await asyncio.gather(
            mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, wait=0.5),
            mesh.lab.ping(mesh.b.site, mesh.a.wg.tunnel_ip, wait=0.5),
        )


async def _wait_endpoint(node: Node, endpoint: str, timeout: float) -> bool:
    """True once ``node``'s WireGuard has ``endpoint`` for its peer (within ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await node.peer_endpoint() != endpoint:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def _last_endpoints(node: Node) -> str:
    found = [e["msg"] for e in node.log_lines() if "public endpoint" in e.get("msg", "")]
    match = re.search(r"endpoints=(\S+)", found[-1])
    assert match, found
    return match.group(1)
