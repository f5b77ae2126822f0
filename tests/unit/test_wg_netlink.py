"""The kernel WireGuard backend against a stand-in kernel on the other end of a socket pair.

There is no WireGuard module here (docs/testbed.md), so the kernel is played by a coroutine that
reads the backend's datagrams and answers with netlink messages. Those answers are built two
ways: with pyroute2's ``wgmsg`` encoder, and byte by byte from the kernel's uapi layout
(``struct sockaddr_in6``, ``struct __kernel_timespec``, nests of type 0 as the kernel writes
them), independently of the backend's own encoder. Requests are checked with a
separate attribute walker against the same layout. Everything from encoding to decoding is
the production path; only the socket is replaced.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pyroute2.netlink.generic.wireguard import wgmsg

from stunmeshd.errors import DeviceNotFound, WireGuardError
from stunmeshd.wireguard import NetlinkBackend
from stunmeshd.wireguard.base import PeerInfo
from stunmeshd.wireguard.netlink import parse_device_dump

# RFC 7748 section 6.1 (X25519): Alice's private key and the public key it derives.
PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
PSK = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
PEER_A = bytes(range(1, 33))
PEER_B = bytes(range(33, 65))
PEER_C = bytes(range(65, 97))

FAMILY = 0x1B  # whatever id the kernel gave the "wireguard" family on this boot
GENL_ID_CTRL = 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_MULTI, F_ACK, F_DUMP_INTR, F_DUMP = 0x1, 0x2, 0x4, 0x10, 0x300
NESTED = 0x8000

# include/uapi/linux/wireguard.h
DEV_IFINDEX, DEV_IFNAME, DEV_PRIVATE_KEY, DEV_PUBLIC_KEY = 1, 2, 3, 4
DEV_LISTEN_PORT, DEV_FWMARK, DEV_PEERS = 6, 7, 8
PEER_PUBLIC_KEY, PEER_PRESHARED_KEY, PEER_FLAGS, PEER_ENDPOINT = 1, 2, 3, 4
PEER_KEEPALIVE, PEER_HANDSHAKE, PEER_RX, PEER_TX, PEER_ALLOWEDIPS, PEER_VERSION = (
    5,
    6,
    7,
    8,
    9,
    10,
)
WGPEER_F_UPDATE_ONLY = 0x4


# ---- the kernel's wire layout, written out independently of pyroute2 ----------------------


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def nlmsg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 4242) + body


def genl(kind: int, flags: int, seq: int, cmd: int, attrs: bytes) -> bytes:
    return nlmsg(kind, flags, seq, struct.pack("=BBH", cmd, 1, 0) + attrs)


def done(seq: int, code: int = 0) -> bytes:
    return nlmsg(NLMSG_DONE, F_MULTI, seq, struct.pack("=i", code))


def error(request: bytes, code: int) -> bytes:
    seq = struct.unpack_from("=I", request, 8)[0]
    return nlmsg(NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + request[:16])


def sockaddr_in(ip: str, port: int) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", port)
        + socket.inet_aton(ip)
        + bytes(8)
    )


def sockaddr_in6(ip: str, port: int, scope_id: int = 0) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, 0)
        + socket.inet_pton(socket.AF_INET6, ip)
        + struct.pack("=I", scope_id)
    )


def allowedip(ip: str, cidr: int) -> bytes:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return nla(
        NESTED,
        nla(1, struct.pack("=H", family))
        + nla(2, socket.inet_pton(family, ip))
        + nla(3, struct.pack("=B", cidr)),
    )


def kernel_peer(
    key: bytes,
    *,
    endpoint: bytes | None = None,
    handshake: tuple[int, int] = (0, 0),
    rx: int = 0,
    tx: int = 0,
    keepalive: int = 0,
    allowed: bytes = b"",
    continuation: bool = False,
) -> bytes:
    """One peer nest the way drivers/net/wireguard/netlink.c get_peer() writes it."""
    attrs = nla(PEER_PUBLIC_KEY, key)
    if not continuation:
        attrs += (
            nla(PEER_PRESHARED_KEY, PSK)
            + nla(PEER_HANDSHAKE, struct.pack("=qq", *handshake))
            + nla(PEER_KEEPALIVE, struct.pack("=H", keepalive))
            + nla(PEER_TX, struct.pack("=Q", tx))
            + nla(PEER_RX, struct.pack("=Q", rx))
            + nla(PEER_VERSION, struct.pack("=I", 1))
        )
        if endpoint is not None:
            attrs += nla(PEER_ENDPOINT, endpoint)
    if allowed:
        attrs += nla(PEER_ALLOWEDIPS | NESTED, allowed)
    return nla(NESTED, attrs)  # peers are nests of type 0


def device_attrs(listen_port: int = 51820, fwmark: int = 0) -> bytes:
    return (
        nla(DEV_LISTEN_PORT, struct.pack("=H", listen_port))
        + nla(DEV_FWMARK, struct.pack("=I", fwmark))
        + nla(DEV_IFINDEX, struct.pack("=I", 7))
        + nla(DEV_IFNAME, b"wg0\0")
        + nla(DEV_PRIVATE_KEY, PRIVATE)
        + nla(DEV_PUBLIC_KEY, PUBLIC)
    )


def walk(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each attribute in ``data``."""
    out = []
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        out.append((kind, data[offset + 4 : offset + length]))
        offset += (length + 3) & ~3
    return out


# ---- the stand-in kernel ------------------------------------------------------------------

Answer = Callable[[bytes, int], list[bytes]]  # (request, seq) -> datagrams


class FakeKernel:
    """Answers the family lookup itself and hands WireGuard requests to ``answer``."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []  # WireGuard-family requests, exactly as sent
        self.family_error = 0
        self.answer: Answer = lambda request, seq: [error(request, errno.ENODEV)]
        self.tasks: list[asyncio.Task[None]] = []

    def socket_factory(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.setblocking(False)
        self.tasks.append(asyncio.get_running_loop().create_task(self._serve(theirs)))
        return ours

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(sock, 1 << 16):
                _, kind, _, seq, _ = struct.unpack_from("=IHHII", data)
                if kind == GENL_ID_CTRL:
                    assert walk(data[20:]) == [(2, b"wireguard\0")]
                    if self.family_error:
                        replies = [error(data, self.family_error)]
                    else:
                        attrs = nla(1, struct.pack("=H", FAMILY)) + nla(2, b"wireguard\0")
                        replies = [genl(GENL_ID_CTRL, 0, seq, 1, attrs)]
                else:
                    assert kind == FAMILY
                    self.requests.append(data)
                    replies = self.answer(data, seq)
                for reply in replies:
                    await loop.sock_sendall(sock, reply)
        finally:
            sock.close()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for result in results:  # an assertion inside the kernel fails the test
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result


@pytest.fixture
async def kernel() -> AsyncIterator[FakeKernel]:
    fake = FakeKernel()
    try:
        yield fake
    finally:
        await fake.close()


def backend(kernel: FakeKernel, **kw: Any) -> NetlinkBackend:
    return NetlinkBackend(socket_factory=kernel.socket_factory, **kw)


# ---- reading a device ---------------------------------------------------------------------


def hand_built_dump(seq: int) -> list[bytes]:
    """Two datagrams: device + peer A + start of peer B; then the rest of B, C and DONE."""
    first = genl(
        FAMILY,
        F_MULTI,
        seq,
        0,
        device_attrs(listen_port=51820, fwmark=0x42)
        + nla(
            DEV_PEERS | NESTED,
            kernel_peer(
                PEER_A,
                endpoint=sockaddr_in("203.0.113.20", 40000),
                handshake=(1700000000, 250_000_000),
                rx=92,
                tx=1184,
                keepalive=25,
                allowed=allowedip("198.19.0.2", 32),
            )
            + kernel_peer(
                PEER_B,
                endpoint=sockaddr_in6("2001:db8::7", 51821),
                allowed=allowedip("198.19.0.3", 32),
            ),
        ),
    )
    second = genl(
        FAMILY,
        F_MULTI,
        seq,
        0,
        nla(DEV_IFINDEX, struct.pack("=I", 7))
        + nla(DEV_IFNAME, b"wg0\0")
        + nla(
            DEV_PEERS | NESTED,
            kernel_peer(PEER_B, allowed=allowedip("2001:db8:1::", 64), continuation=True)
            + kernel_peer(PEER_C),
        ),
    )
    return [first, second + done(seq)]


async def test_read_device_from_kernel_layout(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: hand_built_dump(seq)
    info = await backend(kernel).read_device("wg0")

    assert info.name == "wg0"
    assert info.private_key == PRIVATE
    assert info.public_key == PUBLIC
    assert (info.listen_port, info.fwmark) == (51820, 0x42)
    assert list(info.peers) == [PEER_A, PEER_B, PEER_C]

    a = info.peers[PEER_A]
    assert a.endpoint == "203.0.113.20:40000"
    assert a.latest_handshake == pytest.approx(1700000000.25)
    assert (a.rx_bytes, a.tx_bytes, a.persistent_keepalive) == (92, 1184, 25)
    # the continuation of B (public key + allowed IPs only) must not wipe its endpoint
    assert info.peers[PEER_B].endpoint == "[2001:db8::7]:51821"
    assert info.peers[PEER_B].latest_handshake == 0.0
    assert info.peers[PEER_C].endpoint is None

    # the request: a WG_CMD_GET_DEVICE dump naming the interface
    (request,) = kernel.requests
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert (kind, flags) == (FAMILY, F_REQUEST | F_DUMP)
    assert request[16:18] == bytes([0, 1])  # cmd WG_CMD_GET_DEVICE, version 1
    assert walk(request[20:]) == [(DEV_IFNAME, b"wg0\0")]


def pyroute2_message(seq: int, attrs: list[Any]) -> bytes:
    msg = wgmsg()
    msg["cmd"] = 0
    msg["version"] = 1
    msg["attrs"] = attrs
    msg["header"]["type"] = FAMILY
    msg["header"]["flags"] = F_MULTI
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 4242
    msg.encode()
    return bytes(msg.data)


def b64(key: bytes) -> bytes:
    return base64.b64encode(key)


async def test_read_device_from_pyroute2_encoded_dump(kernel: FakeKernel) -> None:
    def answer(request: bytes, seq: int) -> list[bytes]:
        first = pyroute2_message(
            seq,
            [
                ["WGDEVICE_A_IFINDEX", 7],
                ["WGDEVICE_A_IFNAME", "wg0"],
                ["WGDEVICE_A_PRIVATE_KEY", b64(PRIVATE)],
                ["WGDEVICE_A_PUBLIC_KEY", b64(PUBLIC)],
                ["WGDEVICE_A_LISTEN_PORT", 40001],
                [
                    "WGDEVICE_A_PEERS",
                    [
                        {
                            "attrs": [
                                ["WGPEER_A_PUBLIC_KEY", b64(PEER_A)],
                                ["WGPEER_A_ENDPOINT", {"addr": "198.51.100.10", "port": 1}],
                                [
                                    "WGPEER_A_LAST_HANDSHAKE_TIME",
                                    {"tv_sec": 1700000001, "tv_nsec": 500_000_000},
                                ],
                                ["WGPEER_A_RX_BYTES", 2**40],
                                ["WGPEER_A_TX_BYTES", 7],
                                ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 65535],
                            ]
                        },
                    ],
                ],
            ],
        )
        second = pyroute2_message(
            seq,
            [
                ["WGDEVICE_A_IFNAME", "wg0"],
                [
                    "WGDEVICE_A_PEERS",
                    [
                        {
                            "attrs": [
                                ["WGPEER_A_PUBLIC_KEY", b64(PEER_B)],
                                ["WGPEER_A_ENDPOINT", {"addr": "2001:db8:0:0::1:0", "port": 9}],
                            ]
                        }
                    ],
                ],
            ],
        )
        return [first, second, done(seq)]

    kernel.answer = answer
    info = await backend(kernel).read_device("wg0")
    assert (info.public_key, info.listen_port, info.fwmark) == (PUBLIC, 40001, 0)
    a, b = info.peers[PEER_A], info.peers[PEER_B]
    assert a.endpoint == "198.51.100.10:1"
    assert a.latest_handshake == pytest.approx(1700000001.5)
    assert (a.rx_bytes, a.tx_bytes, a.persistent_keepalive) == (2**40, 7, 65535)
    assert b.endpoint == "[2001:db8::1:0]:9"


async def test_interrupted_dump_is_read_again(kernel: FakeKernel) -> None:
    def answer(request: bytes, seq: int) -> list[bytes]:
        replies = hand_built_dump(seq)
        if len(kernel.requests) == 1:  # the peer list changed under the first dump
            flagged = bytearray(replies[0])
            struct.pack_into("=H", flagged, 6, F_MULTI | F_DUMP_INTR)
            replies[0] = bytes(flagged)
        return replies

    kernel.answer = answer
    info = await backend(kernel).read_device("wg0")
    assert len(kernel.requests) == 2
    assert set(info.peers) == {PEER_A, PEER_B, PEER_C}


async def test_dump_that_never_settles_is_an_error(kernel: FakeKernel) -> None:
    def answer(request: bytes, seq: int) -> list[bytes]:
        return [genl(FAMILY, F_MULTI | F_DUMP_INTR, seq, 0, device_attrs()), done(seq)]

    kernel.answer = answer
    with pytest.raises(WireGuardError, match="kept changing"):
        await backend(kernel).read_device("wg0")


@pytest.mark.parametrize(
    "body",
    [
        nla(DEV_LISTEN_PORT, struct.pack("=H", 1)) + nla(DEV_PRIVATE_KEY, PRIVATE)[:-8],
        nla(DEV_PRIVATE_KEY, PRIVATE[:31]) + nla(DEV_LISTEN_PORT, struct.pack("=H", 1)),
        nla(DEV_PRIVATE_KEY, PRIVATE) + nla(DEV_LISTEN_PORT, struct.pack("=I", 1)),
        device_attrs() + nla(DEV_PEERS | NESTED, nla(NESTED, nla(PEER_ENDPOINT, bytes(16)))),
        device_attrs() + nla(DEV_PEERS | NESTED, kernel_peer(PEER_A, endpoint=bytes(16))),
        device_attrs() + nla(DEV_PEERS | NESTED, kernel_peer(PEER_A, endpoint=bytes(8))),
        device_attrs()
        + nla(
            DEV_PEERS | NESTED,
            kernel_peer(PEER_A, endpoint=sockaddr_in6("2001:db8::1", 1)[:16]),
        ),
        device_attrs() + nla(DEV_PEERS | NESTED, kernel_peer(PEER_A, handshake=(1, 1_000_000_000))),
        device_attrs() + nla(DEV_PEERS | NESTED, kernel_peer(PEER_A[:20])),
        nla(DEV_LISTEN_PORT, struct.pack("=H", 51820)),  # no private key set
    ],
    ids=[
        "truncated-private-key",
        "short-private-key",
        "wide-listen-port",
        "peer-without-key",
        "endpoint-family-0",
        "short-endpoint",
        "ipv6-family-in-ipv4-size",
        "nsec-out-of-range",
        "short-peer-key",
        "no-private-key",
    ],
)
async def test_malformed_dump_raises_wireguard_error(kernel: FakeKernel, body: bytes) -> None:
    kernel.answer = lambda request, seq: [genl(FAMILY, F_MULTI, seq, 0, body), done(seq)]
    with pytest.raises(WireGuardError) as caught:
        await backend(kernel).read_device("wg0")
    assert PRIVATE.hex() not in str(caught.value)
    assert base64.b64encode(PRIVATE).decode() not in str(caught.value)


def test_parse_device_dump_merges_and_rejects_garbage() -> None:
    assert parse_device_dump("wg0", hand_built_dump(1)[:1]).public_key == PUBLIC
    with pytest.raises(WireGuardError):
        parse_device_dump("wg0", [b"\xff" * 40])


# ---- setting an endpoint ------------------------------------------------------------------


def peer_of(request: bytes) -> tuple[int, dict[int, bytes], list[tuple[int, bytes]]]:
    """(flags, device attributes, attributes of the one peer) of a SET_DEVICE request."""
    _, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert kind == FAMILY
    assert request[16:18] == bytes([1, 1])  # cmd WG_CMD_SET_DEVICE, version 1
    device = dict(walk(request[20:]))
    peers_kind = [k for k, _ in walk(request[20:]) if k & 0xFF == DEV_PEERS]
    assert peers_kind and peers_kind[0] & NESTED  # the kernel wants NLA_F_NESTED here
    ((_, peer),) = walk(device[peers_kind[0]])
    return flags, device, walk(peer)


async def test_set_endpoint_request_ipv4(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, 0)]  # the ACK
    await backend(kernel).set_endpoint("wg0", PEER_A, "203.0.113.20:40000")
    (request,) = kernel.requests
    flags, device, peer = peer_of(request)
    assert flags == F_REQUEST | F_ACK
    assert device[DEV_IFNAME] == b"wg0\0"
    assert set(device) == {DEV_IFNAME, DEV_PEERS | NESTED}  # nothing else of the device
    assert dict(peer) == {
        PEER_PUBLIC_KEY: PEER_A,
        PEER_FLAGS: struct.pack("=I", WGPEER_F_UPDATE_ONLY),
        PEER_ENDPOINT: sockaddr_in("203.0.113.20", 40000),
    }


async def test_set_endpoint_request_ipv6_with_keepalive(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, 0)]
    await backend(kernel).set_endpoint("wg0", PEER_B, "[2001:DB8::0:7]:51821", keepalive=25)
    # two requests: keepalive 0, then 25 — the kernel sends at once only on a 0 -> N change
    assert len(kernel.requests) == 2
    for request, keepalive in zip(kernel.requests, (0, 25), strict=True):
        _, _, peer = peer_of(request)
        assert dict(peer) == {
            PEER_PUBLIC_KEY: PEER_B,
            PEER_FLAGS: struct.pack("=I", WGPEER_F_UPDATE_ONLY),
            PEER_ENDPOINT: sockaddr_in6("2001:db8::7", 51821),
            PEER_KEEPALIVE: struct.pack("=H", keepalive),
        }


async def test_set_endpoint_with_zone_keeps_scope_id_in_host_order(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, 0)]
    await backend(kernel).set_endpoint("wg0", PEER_B, "[fe80::1%3]:51820")
    _, _, peer = peer_of(kernel.requests[0])
    assert dict(peer)[PEER_ENDPOINT] == sockaddr_in6("fe80::1", 51820, scope_id=3)


async def test_scoped_endpoint_is_read_back_with_its_zone(kernel: FakeKernel) -> None:
    body = device_attrs() + nla(
        DEV_PEERS | NESTED,
        kernel_peer(PEER_A, endpoint=sockaddr_in6("fe80::1", 51820, scope_id=3)),
    )
    kernel.answer = lambda request, seq: [genl(FAMILY, F_MULTI, seq, 0, body), done(seq)]
    info = await backend(kernel).read_device("wg0")
    assert info.peers[PEER_A].endpoint == "[fe80::1%3]:51820"


@pytest.mark.parametrize(
    ("key", "endpoint", "keepalive"),
    [
        (PEER_A[:31], "203.0.113.20:40000", None),
        (PEER_A, "203.0.113.20:40000\n", None),
        (PEER_A, "203.0.113.20", None),
        (PEER_A, "[2001:db8::1]:70000", None),
        (PEER_A, "203.0.113.20:40000", 65536),
        (PEER_A, "203.0.113.20:40000", False),
    ],
)
async def test_bad_set_input_sends_nothing(
    kernel: FakeKernel, key: bytes, endpoint: str, keepalive: int | None
) -> None:
    with pytest.raises(WireGuardError):
        await backend(kernel).set_endpoint("wg0", key, endpoint, keepalive=keepalive)
    assert kernel.requests == []


# ---- errors the kernel gives --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exc", "message"),
    [
        (errno.ENODEV, DeviceNotFound, "no interface wg0"),
        (errno.EOPNOTSUPP, DeviceNotFound, "not a kernel WireGuard interface"),
        (errno.EPERM, WireGuardError, "CAP_NET_ADMIN"),
        (errno.EINVAL, WireGuardError, "Invalid argument"),
    ],
)
async def test_kernel_errors_are_translated(
    kernel: FakeKernel, code: int, exc: type[Exception], message: str
) -> None:
    kernel.answer = lambda request, seq: [error(request, code)]
    with pytest.raises(exc, match=message):
        await backend(kernel).read_device("wg0")
    with pytest.raises(exc, match=message):
        await backend(kernel).set_endpoint("wg0", PEER_A, "203.0.113.20:40000")


async def test_error_reported_at_the_end_of_a_dump(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [done(seq, -errno.EMSGSIZE)]
    with pytest.raises(WireGuardError, match="too long"):
        await backend(kernel).read_device("wg0")


async def test_missing_module_is_device_not_found(kernel: FakeKernel) -> None:
    kernel.family_error = errno.ENOENT
    with pytest.raises(DeviceNotFound, match="module is not loaded"):
        await backend(kernel).read_device("wg0")
    assert kernel.requests == []


async def test_silent_kernel_times_out(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: []
    with pytest.raises(WireGuardError, match="did not answer"):
        await backend(kernel, timeout=0.2).read_device("wg0")


async def test_stale_replies_are_ignored(kernel: FakeKernel) -> None:
    def answer(request: bytes, seq: int) -> list[bytes]:
        stale = request[:8] + struct.pack("=I", seq + 100) + request[12:]
        return [error(stale, errno.EIO), *hand_built_dump(seq)]

    kernel.answer = answer
    assert (await backend(kernel).read_device("wg0")).public_key == PUBLIC


async def test_private_key_never_reaches_the_log(
    kernel: FakeKernel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kernel.answer = lambda request, seq: hand_built_dump(seq)
    info = await backend(kernel).read_device("wg0")
    assert "get_device iface=wg0" in caplog.text  # debug logging ran ...
    for secret in (PRIVATE.hex(), base64.b64encode(PRIVATE).decode(), repr(PRIVATE)):
        assert secret not in caplog.text  # ... without the key
        assert secret not in repr(info)


# ---- the real kernel ----------------------------------------------------------------------


async def test_real_kernel_answers_for_a_missing_interface() -> None:
    """Through a real netlink socket: no module (this machine) or no such interface."""
    with pytest.raises(WireGuardError) as caught:
        await NetlinkBackend().read_device("smdnone0")
    if os.geteuid() == 0:  # unprivileged, a loaded module answers EPERM first
        assert isinstance(caught.value, DeviceNotFound)


# ---- re-creating a never-connected peer (reset_peer) --------------------------------------

WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS = 0x1, 0x2


def peers_of(request: bytes) -> list[dict[int, bytes]]:
    """The attributes of every peer nest of a SET_DEVICE request, in order."""
    device = walk(request[20:])
    (payload,) = [p for k, p in device if k == DEV_PEERS | NESTED]
    return [dict(walk(peer)) for _, peer in walk(payload)]


def allowed_of(payload: bytes) -> list[dict[int, bytes]]:
    return [dict(walk(entry)) for _, entry in walk(payload)]


async def test_dump_carries_allowed_ips_and_preshared_key(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: hand_built_dump(seq)
    info = await backend(kernel).read_device("wg0")
    # B's allowed IPs span two messages (the kernel splits long peers)
    assert info.peers[PEER_B].allowed_ips == ("198.19.0.3/32", "2001:db8:1::/64")
    assert info.peers[PEER_A].allowed_ips == ("198.19.0.2/32",)
    assert info.peers[PEER_C].allowed_ips == ()
    assert info.peers[PEER_B].preshared_key == PSK
    assert repr(PSK) not in repr(info)  # a secret: kept out of reprs (and so out of logs)


async def test_reset_peer_removes_and_re_adds_the_peer_in_one_request(
    kernel: FakeKernel,
) -> None:
    """Read from a recorded dump, re-created with the same allowed IPs and preshared key."""
    kernel.answer = lambda request, seq: hand_built_dump(seq)
    wg = backend(kernel)
    peer = (await wg.read_device("wg0")).peers[PEER_B]
    kernel.requests.clear()
    kernel.answer = lambda request, seq: [error(request, 0)]
    await wg.reset_peer("wg0", peer, "203.0.113.20:40000", 25)

    (request,) = kernel.requests  # one transaction: the kernel applies it under its lock
    _, _, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert flags == F_REQUEST | F_ACK
    removal, again = peers_of(request)
    assert removal == {
        PEER_PUBLIC_KEY: PEER_B,
        PEER_FLAGS: struct.pack("=I", WGPEER_F_REMOVE_ME),
    }
    allowed = again.pop(PEER_ALLOWEDIPS | NESTED)
    assert again == {
        PEER_PUBLIC_KEY: PEER_B,
        PEER_FLAGS: struct.pack("=I", WGPEER_F_REPLACE_ALLOWEDIPS),  # not UPDATE_ONLY: creates
        PEER_ENDPOINT: sockaddr_in("203.0.113.20", 40000),
        PEER_KEEPALIVE: struct.pack("=H", 25),
        PEER_PRESHARED_KEY: PSK,
    }
    expected = [dict(walk(walk(allowedip(ip, cidr))[0][1])) for ip, cidr in
                (("198.19.0.3", 32), ("2001:db8:1::", 64))]  # fmt: skip
    assert allowed_of(allowed) == expected


async def test_reset_peer_without_preshared_key_sends_none(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, 0)]
    peer = PeerInfo(
        PEER_A, None, 0.0, 0, 0, 0, allowed_ips=("10.0.0.0/8",), preshared_key=bytes(32)
    )
    await backend(kernel).reset_peer("wg0", peer, "[2001:db8::7]:51821", 25)
    _, again = peers_of(kernel.requests[0])
    assert PEER_PRESHARED_KEY not in again
    assert again[PEER_ENDPOINT] == sockaddr_in6("2001:db8::7", 51821)


async def test_reset_peer_with_huge_allowed_ips_only_sets_the_endpoint(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, 0)]
    many = tuple(f"10.{i // 256}.{i % 256}.0/24" for i in range(2000))
    peer = PeerInfo(PEER_A, None, 0.0, 0, 0, 0, allowed_ips=many)
    await backend(kernel).reset_peer("wg0", peer, "203.0.113.20:40000", 25)
    for request in kernel.requests:  # the update-only endpoint change (keepalive 0, then 25)
        _, _, attrs = peer_of(request)
        assert dict(attrs)[PEER_FLAGS] == struct.pack("=I", WGPEER_F_UPDATE_ONLY)


async def test_reset_peer_refusal_is_a_wireguard_error(kernel: FakeKernel) -> None:
    kernel.answer = lambda request, seq: [error(request, errno.EINVAL)]
    peer = PeerInfo(PEER_A, None, 0.0, 0, 0, 0, allowed_ips=("10.0.0.0/8",))
    with pytest.raises(WireGuardError):
        await backend(kernel).reset_peer("wg0", peer, "203.0.113.20:40000", 25)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-ip/8"])
async def test_reset_peer_with_a_bad_allowed_ip_sends_nothing(kernel: FakeKernel, bad: str) -> None:
    peer = PeerInfo(PEER_A, None, 0.0, 0, 0, 0, allowed_ips=(bad,))
    with pytest.raises(WireGuardError):
        await backend(kernel).reset_peer("wg0", peer, "203.0.113.20:40000", 25)
    assert kernel.requests == []
