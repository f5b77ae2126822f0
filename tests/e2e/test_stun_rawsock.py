"""Raw-socket STUN from WireGuard's port, for real: netns NAT, coturn, stund, wireguard-go.

Every packet stays inside the lab's namespaces (docs/testbed.md); sockets are created inside a lab
host through ``sock_factory``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from stunmeshd.errors import StunError
from stunmeshd.lab.netns import Namespace
from stunmeshd.lab.topology import WAN_A_IP, WAN_B_IP, Lab, NatMode, WireGuard
from stunmeshd.stun import RawStunTransport, StunClient, discover, format_address
from stunmeshd.stun.codec import encode_binding_response, parse_message
from stunmeshd.stun.rawsock import attach_filter, ipv4_filter, ipv6_filter

pytestmark = pytest.mark.root

WG_PORT = 51820
A_PUBLIC = ("198.51.100.10", 40000)  # hostA's 51820 through the port-changing NAT
B_PUBLIC = ("203.0.113.20", 51820)  # hostB's 51820 through the port-keeping NAT
FAKE_MAPPING = ("203.0.113.66", 6666)  # what the spoofed answers claim


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(nat_a=NatMode.PORT_CHANGING, nat_b=NatMode.ENDPOINT_INDEPENDENT) as bed:
        yield bed


async def _udp_ports(ns: Namespace) -> str:
    return await ns.run("ss", "-Hlun", f"sport = :{WG_PORT}")


async def _connect(wg: WireGuard, peer: WireGuard, endpoint: tuple[str, int]) -> None:
    """Add the peer at ``endpoint`` with keepalive on, which starts the handshake at once."""
    await wg.wg(
        "set",
        wg.ifname,
        "peer",
        base64.b64encode(peer.public_key).decode(),
        "allowed-ips",
        f"{peer.tunnel_ip}/32",
        "endpoint",
        format_address(endpoint),
        "persistent-keepalive",
        "1",
    )


async def _wait_handshake(wg: WireGuard, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        out = await wg.wg("show", wg.ifname, "latest-handshakes")
        if any(line.split()[-1] != "0" for line in out.splitlines() if line.strip()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no WireGuard handshake on {wg.site.host.name} within {timeout}s")


async def test_discovery_from_wireguards_port_through_nat_and_the_tunnel_still_works(
    lab: Lab,
) -> None:
    wg_a = await lab.start_wireguard(lab.a)
    wg_b = await lab.start_wireguard(lab.b)
    assert f":{WG_PORT}" in await _udp_ports(lab.a.host)  # wireguard-go holds the port

    found_a = await discover(lab.stun_servers, port=WG_PORT, sock_factory=lab.a.host.socket)
    found_b = await discover(lab.stun_servers, port=WG_PORT, sock_factory=lab.b.host.socket)
    # The NAT changed A's port: the answer is the mapping, not the local port.
    assert found_a.mapped == A_PUBLIC
    assert found_a.server == (WAN_A_IP, 3478)
    assert found_a.response_origin == (WAN_A_IP, 3478)
    assert found_a.other_address is not None  # coturn advertises its RFC 5780 alternate
    assert found_b.mapped == B_PUBLIC

    # Each side's WireGuard pointed at the other's discovered mapping forms the tunnel.
    await _connect(wg_a, wg_b, found_b.mapped)
    await _connect(wg_b, wg_a, found_a.mapped)
    await _wait_handshake(wg_a)
    assert await lab.ping(lab.a, wg_b.tunnel_ip, count=3)

    # WireGuard also receives every STUN answer on its port; it must shrug them off.
    for _ in range(20):
        again = await discover(lab.stun_servers, port=WG_PORT, sock_factory=lab.a.host.socket)
        assert again.mapped == A_PUBLIC
    assert wg_a.process.returncode is None
    assert await lab.ping(lab.a, wg_b.tunnel_ip, count=3)


async def test_spoofed_answers_are_ignored(lab: Lab) -> None:
    """A fake server answers with a wrong transaction id from its own address, and with the
    right one from another port and another address; only its genuine answer counts."""
    await lab.start_wireguard(lab.a)
    server = (WAN_A_IP, 3999)
    other_port = (WAN_A_IP, 4000)
    other_address = (WAN_B_IP, 3999)
    sockets = {}
    for addr in (server, other_port, other_address):
        sock = lab.wan.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(addr)
        sockets[addr] = sock
    loop = asyncio.get_running_loop()
    try:
        async with RawStunTransport(
            socket.AF_INET, WG_PORT, sock_factory=lab.a.host.socket
        ) as transport:
            # Open NAT mappings towards the two spoofing sources, as a real attacker on the
            # path could; without them natA would drop the spoofs and prove nothing.
            for addr in (other_port, other_address):
                await transport.send(b"hole", addr)
                data, seen_from = await asyncio.wait_for(loop.sock_recvfrom(sockets[addr], 2048), 5)
                assert data == b"hole" and seen_from == A_PUBLIC

            async def fake_server() -> None:
                request, client_addr = await loop.sock_recvfrom(sockets[server], 2048)
                tid = parse_message(request).transaction_id
                spoof = encode_binding_response(tid, FAKE_MAPPING)
                wrong_tid = encode_binding_response(bytes(12), FAKE_MAPPING)
                await loop.sock_sendto(sockets[server], wrong_tid, client_addr)
                await loop.sock_sendto(sockets[other_port], spoof, client_addr)
                await loop.sock_sendto(sockets[other_address], spoof, client_addr)
                await asyncio.sleep(0.05)  # let the spoofs arrive first
                genuine = encode_binding_response(tid, client_addr)
                await loop.sock_sendto(sockets[server], genuine, client_addr)

            responder = asyncio.create_task(fake_server())
            client = StunClient(transport)
            result = await client.binding(server)
            await responder
    finally:
        for sock in sockets.values():
            sock.close()
    assert result.mapped == A_PUBLIC  # not FAKE_MAPPING
    assert client.stats.wrong_source == 2
    assert client.stats.unmatched == 1


async def test_silent_first_server_falls_back_to_the_second(lab: Lab) -> None:
    await lab.start_wireguard(lab.a)
    dead = f"{WAN_A_IP}:3999"  # nothing listens there
    result = await discover(
        [dead, f"{WAN_B_IP}:3478"], port=WG_PORT, sock_factory=lab.a.host.socket
    )
    assert result.server == (WAN_B_IP, 3478)
    assert result.mapped == A_PUBLIC


async def test_no_server_answering_is_a_clear_error(lab: Lab) -> None:
    await lab.stop_coturn()
    with pytest.raises(StunError) as info:
        await discover(
            lab.stun_servers,
            port=WG_PORT,
            sock_factory=lab.a.host.socket,
            rto=0.05,
            max_transmissions=2,
            final_wait=0.2,
        )
    message = str(info.value)
    assert message.startswith("no STUN server answered: ")
    assert f"{WAN_A_IP}:3478: no answer to 2 requests" in message
    assert f"{WAN_B_IP}:3478: no answer to 2 requests" in message


async def test_rfc3489_server_stund(lab: Lab) -> None:
    """stund (RFC 3489): MAPPED-ADDRESS, CHANGED-ADDRESS and SOURCE-ADDRESS are understood."""
    await lab.spawn(lab.wan, "stund", "-h", WAN_A_IP, "-a", WAN_B_IP, "-p", "3480", "-o", "3481")
    await lab.wait_udp_listening(lab.wan, 3480, addresses=(WAN_A_IP, WAN_B_IP))
    result = await discover([f"{WAN_A_IP}:3480"], port=WG_PORT, sock_factory=lab.a.host.socket)
    assert result.mapped == A_PUBLIC
    assert result.other_address == (WAN_B_IP, 3481)
    assert result.response_origin == (WAN_A_IP, 3480)


async def test_ipv6_discovery_from_wireguards_port(lab: Lab) -> None:
    """IPv6 raw sockets: no IP header in the filter, and the kernel must fill the UDP
    checksum (IPV6_CHECKSUM) or the server's kernel drops the request."""
    host, router = lab.a.host, lab.a.router
    await host.run("ip", "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
    await router.run("ip", "addr", "add", "2001:db8:1::1/64", "dev", "lan", "nodad")
    await lab.spawn(
        router,
        "turnserver",
        "-n",
        "--stun-only",
        "-L",
        "2001:db8:1::1",
        "-p",
        "3478",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--no-cli",
        "--no-software-attribute",
        "--log-file",
        "stdout",
        "--simple-log",
        "--pidfile",
        str(lab.workdir / "turnserver-v6.pid"),
        log_name="turnserver-v6",
    )
    await lab.wait_udp_listening(router, 3478, addresses=("[2001:db8:1::1]",))
    await lab.start_wireguard(lab.a)
    assert f"[::]:{WG_PORT}" in await _udp_ports(host)  # wireguard-go holds the v6 port too

    result = await discover(
        ["[2001:db8:1::1]:3478", WAN_A_IP],  # the IPv4 literal is skipped for IPv6
        port=WG_PORT,
        family=socket.AF_INET6,
        sock_factory=host.socket,
    )
    assert result.mapped == ("2001:db8:1::2", WG_PORT)
    assert result.server == ("2001:db8:1::1", 3478)


async def test_fwmark_steers_the_requests(lab: Lab) -> None:
    """With WireGuard's fwmark set, the requests follow the mark's routing policy."""
    host = lab.a.host
    await host.run("ip", "rule", "add", "fwmark", "0x5ca1e", "lookup", "100")
    await host.run("ip", "route", "add", "unreachable", "default", "table", "100")
    servers = lab.stun_servers[:1]
    plain = await discover(servers, port=WG_PORT, sock_factory=host.socket)
    assert plain.mapped == A_PUBLIC
    with pytest.raises(StunError, match="send failed"):
        await discover(servers, port=WG_PORT, fwmark=0x5CA1E, sock_factory=host.socket)


async def test_without_cap_net_raw_the_error_says_so() -> None:
    code = (
        "import asyncio\n"
        "from stunmeshd.stun import discover\n"
        "from stunmeshd.errors import StunError\n"
        "try:\n"
        # loopback only: should the capability drop ever fail, nothing leaves the host
        "    asyncio.run(discover(['127.0.0.1:3478'], port=51820, max_transmissions=1,"
        " final_wait=0.1))\n"
        "except StunError as exc:\n"
        "    print(exc)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "setpriv",
        "--bounding-set=-net_raw",
        "--inh-caps=-net_raw",
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "CAP_NET_RAW is missing" in out.decode()


async def test_transport_refuses_bad_use_clearly() -> None:
    transport = RawStunTransport(socket.AF_INET, WG_PORT)
    with pytest.raises(StunError, match="not open"):
        await transport.send(b"x", (WAN_A_IP, 3478))
    with pytest.raises(StunError, match="listen port"):
        RawStunTransport(socket.AF_INET, 0)  # a device without a port yet
    with pytest.raises(StunError, match="fwmark"):
        RawStunTransport(socket.AF_INET, WG_PORT, fwmark=-1)


def _queued(sock: socket.socket) -> list[bytes]:
    packets = []
    while True:
        try:
            packets.append(sock.recv(65535))
        except BlockingIOError:
            return packets


STUN = encode_binding_response(bytes(range(12)), A_PUBLIC)
WG_DATA = b"\x04\x00\x00\x00" + bytes(28)  # a WireGuard transport-data header


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
async def test_bpf_filter_passes_only_stun_to_our_port(lab: Lab, family: int) -> None:
    """On the host's loopback: WireGuard-like traffic and STUN to another port stay out;
    STUN to our port gets in, also with IPv4 options (the filter reads the IHL)."""
    host = lab.a.host
    loopback = "127.0.0.1" if family == socket.AF_INET else "::1"
    raw = host.socket(family, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sender = host.socket(family, socket.SOCK_DGRAM)
    try:
        raw.setblocking(False)
        program = ipv4_filter(WG_PORT) if family == socket.AF_INET else ipv6_filter(WG_PORT)
        attach_filter(raw, program)
        _queued(raw)
        sender.sendto(WG_DATA, (loopback, WG_PORT))
        sender.sendto(STUN, (loopback, WG_PORT + 1))
        sender.sendto(STUN, (loopback, WG_PORT))
        if family == socket.AF_INET:
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01\x01\x01\x00")
            sender.sendto(STUN, (loopback, WG_PORT))
        await asyncio.sleep(0.2)  # loopback delivery is synchronous; this is just slack
        packets = _queued(raw)
    finally:
        raw.close()
        sender.close()
    if family == socket.AF_INET:
        assert [p[0] & 0x0F for p in packets] == [5, 6]  # IHL: plain, then with options
        assert all(p.endswith(STUN) for p in packets)
    else:
        assert [p[8:] for p in packets] == [STUN]  # no IPv6 header: UDP header, payload


async def test_packets_queued_before_the_filter_are_drained(lab: Lab) -> None:
    """A raw socket sees every UDP packet until its filter is attached; those must go."""
    host = lab.a.host
    early = host.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sender = host.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(WG_DATA, ("127.0.0.1", WG_PORT))
        sender.sendto(STUN, ("127.0.0.1", WG_PORT + 1))
        await asyncio.sleep(0.1)
        transport = RawStunTransport(
            socket.AF_INET, WG_PORT, sock_factory=lambda family, type, proto: early
        )
        async with transport:
            sender.sendto(STUN, ("127.0.0.1", WG_PORT))
            data, source = await asyncio.wait_for(transport.recv(), 5)
            assert data == STUN and source == ("127.0.0.1", sender.getsockname()[1])
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(transport.recv(), 0.3)
    finally:
        early.close()
        sender.close()
