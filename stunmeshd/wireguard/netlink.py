"""Kernel WireGuard driven through generic netlink (the ``wireguard`` family).

The messages are few and fixed (include/uapi/linux/wireguard.h): a family lookup, a device
dump and a device set. They are encoded and decoded here, with struct, against that layout.
pyroute2 was used for them once, but importing any part of it runs its package ``__init__``,
which loads ~160 modules: ~0.1 s on a real machine and 1.2-2 s under the VM tier's TCG, paid
at start-up by every daemon that drives a kernel device and by none that drives wireguard-go
(bench/kernel_wg.py). The conversation is a few lines of asyncio on a non-blocking
``AF_NETLINK`` socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable

from stunmeshd.endpoints import format_endpoint, parse_endpoint
from stunmeshd.errors import DeviceNotFound, WireGuardError
from stunmeshd.wireguard.base import DeviceInfo, PeerInfo, device_info
from stunmeshd.wireguard.uapi import DEFAULT_TIMEOUT, KEY_LEN, check_ifname

log = logging.getLogger(__name__)

NETLINK_GENERIC = 16
NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
GENL_HDR = struct.Struct("=BBH")  # cmd, version, reserved
NLA_HDR = struct.Struct("=HH")  # len, type
NLA_HDR_LEN = NLA_HDR.size
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x10, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
# generic netlink's controller (include/uapi/linux/genetlink.h)
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
# include/uapi/linux/wireguard.h
WG_GENL_NAME = "wireguard"
WG_GENL_VERSION = 1
WG_CMD_GET_DEVICE, WG_CMD_SET_DEVICE = 0, 1
WGDEVICE_A_IFNAME, WGDEVICE_A_PRIVATE_KEY = 2, 3
WGDEVICE_A_LISTEN_PORT, WGDEVICE_A_FWMARK, WGDEVICE_A_PEERS = 6, 7, 8
WGPEER_A_PUBLIC_KEY, WGPEER_A_PRESHARED_KEY, WGPEER_A_FLAGS, WGPEER_A_ENDPOINT = 1, 2, 3, 4
WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, WGPEER_A_LAST_HANDSHAKE_TIME = 5, 6
WGPEER_A_RX_BYTES, WGPEER_A_TX_BYTES, WGPEER_A_ALLOWEDIPS = 7, 8, 9
WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS, WGPEER_F_UPDATE_ONLY = 0x1, 0x2, 0x4
WGALLOWEDIP_A_FAMILY, WGALLOWEDIP_A_IPADDR, WGALLOWEDIP_A_CIDR_MASK = 1, 2, 3

RECV_SIZE = 1 << 16  # the kernel caps dump datagrams at 32 KiB
DUMP_RETRIES = 3  # a dump interrupted by a concurrent peer change is simply asked again
MAX_REPLY_MESSAGES = 100_000
SOCKADDR_IN, SOCKADDR_IN6 = 16, 28
# allowed IPs one reset request may carry: ~40 bytes each, far below the socket's send buffer
MAX_RESET_ALLOWED_IPS = 1000


class NetlinkErrno(Exception):
    """The kernel answered a request with a negative errno."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


class DumpInterrupted(Exception):
    """The kernel flagged the dump as inconsistent (NLM_F_DUMP_INTR)."""


def open_genl_socket() -> socket.socket:
    """A non-blocking generic netlink socket; the kernel picks its port id."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        sock.setblocking(False)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


# ---- attributes (the netlink TLV layout) ---------------------------------------------------


def nla(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    return NLA_HDR.pack(NLA_HDR_LEN + len(payload), kind) + payload + bytes(-len(payload) % 4)


def nest(kind: int, attrs: Iterable[bytes]) -> bytes:
    """A nested attribute (the kernel's WireGuard policy wants NLA_F_NESTED set)."""
    return nla(kind | NLA_F_NESTED, b"".join(attrs))


def walk(data: bytes) -> list[tuple[int, bytes]]:
    """(type without flags, payload) of each attribute; a length that does not fit is refused
    (the kernel's lengths are exact: a short attribute would be read on into its neighbours)."""
    out = []
    offset = 0
    while offset < len(data):
        if offset + NLA_HDR_LEN > len(data):
            raise WireGuardError("truncated netlink attribute")
        length, kind = NLA_HDR.unpack_from(data, offset)
        if length < NLA_HDR_LEN or offset + length > len(data):
            raise WireGuardError("truncated netlink attribute")
        out.append((kind & NLA_TYPE_MASK, data[offset + NLA_HDR_LEN : offset + length]))
        offset += (length + 3) & ~3
    return out


def _first(attrs: list[tuple[int, bytes]], kind: int, *sizes: int) -> bytes | None:
    """The first ``kind`` attribute's payload, after checking its size; None when absent."""
    for found, payload in attrs:
        if found == kind:
            if sizes and len(payload) not in sizes:
                raise WireGuardError(f"attribute {kind} of unexpected size in netlink reply")
            return payload
    return None


def _number(payload: bytes | None, fmt: str) -> int | None:
    """An integer attribute in host order (its size already checked); None when absent."""
    return None if payload is None else int(struct.unpack(fmt, payload)[0])


def _genl_attrs(chunk: bytes) -> list[tuple[int, bytes]]:
    """The attributes of one whole generic netlink message (as split_messages cut it)."""
    if len(chunk) < NLMSG_HDR.size + GENL_HDR.size:
        raise WireGuardError("truncated generic netlink message")
    length = NLMSG_HDR.unpack_from(chunk)[0]
    if not NLMSG_HDR.size + GENL_HDR.size <= length <= len(chunk):
        raise WireGuardError("truncated generic netlink message")
    return walk(chunk[NLMSG_HDR.size + GENL_HDR.size : length])


# ---- messages (pure: encode requests, decode replies) ----------------------------------------

# A request is the generic netlink payload: header (command first) and attributes; the netlink
# header is added when it is sent.


def build_family_request() -> bytes:
    """CTRL_CMD_GETFAMILY for "wireguard": the family id is assigned when the module loads."""
    name = WG_GENL_NAME.encode() + b"\0"
    return GENL_HDR.pack(CTRL_CMD_GETFAMILY, 1, 0) + nla(CTRL_ATTR_FAMILY_NAME, name)


def parse_family_reply(chunks: list[bytes]) -> int:
    """The family id from the CTRL_CMD_NEWFAMILY answer."""
    for chunk in chunks:
        family = _number(_first(_genl_attrs(chunk), CTRL_ATTR_FAMILY_ID, 2), "=H")
        if family:
            return family
    raise WireGuardError("generic netlink did not return the wireguard family id")


def _ifname_attr(ifname: str) -> bytes:
    return nla(WGDEVICE_A_IFNAME, ifname.encode() + b"\0")


def build_get_request(ifname: str) -> bytes:
    """WG_CMD_GET_DEVICE by name (sent as a dump: big devices span several messages)."""
    return GENL_HDR.pack(WG_CMD_GET_DEVICE, WG_GENL_VERSION, 0) + _ifname_attr(ifname)


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise WireGuardError(f"{what} must be 32 bytes")


def _sockaddr(endpoint: str) -> bytes:
    """``struct sockaddr_in`` / ``sockaddr_in6`` for ``ip:port`` / ``[ip%zone]:port`` (family
    and scope id in host order, port and flow info in network order)."""
    try:
        host, port, _ = parse_endpoint(endpoint)
        format_endpoint(host, port)
    except (ValueError, TypeError, AttributeError):
        raise WireGuardError(f"malformed endpoint {endpoint!r}") from None
    address, _, zone = host.partition("%")
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + ip.packed + bytes(8)
    scope = _zone_index(zone) if zone else 0
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI", port, 0)
        + ip.packed
        + struct.pack("=I", scope)
    )


def _keepalive_attr(keepalive: int) -> bytes:
    if isinstance(keepalive, bool) or not isinstance(keepalive, int):
        raise WireGuardError(f"keepalive must be an integer, not {keepalive!r}")
    if not 0 <= keepalive <= 65535:
        raise WireGuardError(f"keepalive out of range (0-65535): {keepalive}")
    return nla(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, struct.pack("=H", keepalive))


def _set_device(ifname: str, peers: list[list[bytes]]) -> bytes:
    """WG_CMD_SET_DEVICE naming only the interface and ``peers`` (nests of type 0, in order)."""
    return (
        GENL_HDR.pack(WG_CMD_SET_DEVICE, WG_GENL_VERSION, 0)
        + _ifname_attr(ifname)
        + nest(WGDEVICE_A_PEERS, [nest(0, peer) for peer in peers])
    )


def _flags_attr(flags: int) -> bytes:
    return nla(WGPEER_A_FLAGS, struct.pack("=I", flags))


def build_set_endpoint_request(
    ifname: str, public_key: bytes, endpoint: str, *, keepalive: int | None = None
) -> bytes:
    """WG_CMD_SET_DEVICE with one peer flagged WGPEER_F_UPDATE_ONLY (never creates a peer)."""
    _check_key(public_key, "peer public key")
    peer = [
        nla(WGPEER_A_PUBLIC_KEY, public_key),
        _flags_attr(WGPEER_F_UPDATE_ONLY),
        nla(WGPEER_A_ENDPOINT, _sockaddr(endpoint)),
    ]
    if keepalive is not None:
        peer.append(_keepalive_attr(keepalive))
    return _set_device(ifname, [peer])


def _allowed_ip_attr(cidr: str) -> bytes:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise WireGuardError(f"malformed allowed IP {cidr!r}") from None
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return nest(
        0,
        [
            nla(WGALLOWEDIP_A_FAMILY, struct.pack("=H", family)),
            nla(WGALLOWEDIP_A_IPADDR, net.network_address.packed),
            nla(WGALLOWEDIP_A_CIDR_MASK, struct.pack("=B", net.prefixlen)),
        ],
    )


def build_reset_peer_request(ifname: str, peer: PeerInfo, endpoint: str, keepalive: int) -> bytes:
    """One WG_CMD_SET_DEVICE that removes ``peer`` and adds it again: same preshared key and
    allowed IPs, the new endpoint, keepalive on.

    The kernel applies the peers of one request in order under its device lock, so nothing
    sees the peer missing; the new peer is not held back by an earlier attempt, and its
    keepalive (0 -> N) makes it initiate a handshake at once.
    """
    _check_key(peer.public_key, "peer public key")
    again = [
        nla(WGPEER_A_PUBLIC_KEY, peer.public_key),
        _flags_attr(WGPEER_F_REPLACE_ALLOWEDIPS),
        nla(WGPEER_A_ENDPOINT, _sockaddr(endpoint)),
        _keepalive_attr(keepalive),
    ]
    if peer.preshared_key and any(peer.preshared_key):
        _check_key(peer.preshared_key, "preshared key")
        again.append(nla(WGPEER_A_PRESHARED_KEY, peer.preshared_key))
    if peer.allowed_ips:
        again.append(nest(WGPEER_A_ALLOWEDIPS, [_allowed_ip_attr(ip) for ip in peer.allowed_ips]))
    removal = [nla(WGPEER_A_PUBLIC_KEY, peer.public_key), _flags_attr(WGPEER_F_REMOVE_ME)]
    return _set_device(ifname, [removal, again])


def _zone_index(zone: str) -> int:
    if zone.isdigit():
        return int(zone)
    try:
        return socket.if_nametoindex(zone)
    except OSError:
        raise WireGuardError(f"unknown interface {zone!r} in endpoint zone") from None


class _Peer:
    """A peer assembled across dump messages: a peer with many allowed IPs is split, and its
    continuation carries only the public key and the rest of the allowed IPs."""

    __slots__ = ("allowed", "endpoint", "handshake", "keepalive", "psk", "public_key", "rx", "tx")

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.endpoint: str | None = None
        self.handshake = 0.0
        self.rx = 0
        self.tx = 0
        self.keepalive = 0
        self.psk = b""
        self.allowed: list[str] = []

    def freeze(self) -> PeerInfo:
        return PeerInfo(
            public_key=self.public_key,
            endpoint=self.endpoint,
            latest_handshake=self.handshake,
            rx_bytes=self.rx,
            tx_bytes=self.tx,
            persistent_keepalive=self.keepalive,
            allowed_ips=tuple(self.allowed),
            preshared_key=self.psk,
        )


def parse_device_dump(ifname: str, chunks: Iterable[bytes]) -> DeviceInfo:
    """Merge the messages of one WG_CMD_GET_DEVICE dump into a DeviceInfo.

    Malformed messages, or values out of their kernel ranges, raise WireGuardError (without
    echoing the bytes: they hold the private key).
    """
    try:
        return _parse_device_dump(ifname, chunks)
    except WireGuardError:
        raise
    except (ValueError, struct.error) as exc:
        raise WireGuardError(
            f"malformed netlink reply for {ifname} ({type(exc).__name__})"
        ) from None


def _parse_device_dump(ifname: str, chunks: Iterable[bytes]) -> DeviceInfo:
    private_key: bytes | None = None
    listen_port = 0
    fwmark = 0
    peers: dict[bytes, _Peer] = {}
    for chunk in chunks:
        attrs = _genl_attrs(chunk)
        value = _first(attrs, WGDEVICE_A_PRIVATE_KEY, KEY_LEN)
        if value is not None:
            private_key = value
        listen_port = _number(_first(attrs, WGDEVICE_A_LISTEN_PORT, 2), "=H") or listen_port
        fwmark = _number(_first(attrs, WGDEVICE_A_FWMARK, 4), "=I") or fwmark
        for kind, group in attrs:
            if kind == WGDEVICE_A_PEERS:
                for _, peer in walk(group):
                    _merge_peer(peers, walk(peer))
    frozen = {key: peer.freeze() for key, peer in peers.items()}
    return device_info(ifname, private_key, listen_port, fwmark, frozen)


def _merge_peer(peers: dict[bytes, _Peer], attrs: list[tuple[int, bytes]]) -> None:
    key = _first(attrs, WGPEER_A_PUBLIC_KEY, KEY_LEN)
    if key is None:
        raise WireGuardError("netlink peer without a public key")
    peer = peers.get(key)
    if peer is None:
        peer = peers[key] = _Peer(key)
    value = _first(attrs, WGPEER_A_ENDPOINT, SOCKADDR_IN, SOCKADDR_IN6)
    if value is not None:
        peer.endpoint = _endpoint(value)
    value = _first(attrs, WGPEER_A_LAST_HANDSHAKE_TIME, 16)
    if value is not None:
        sec, nsec = struct.unpack("=qq", value)
        if not 0 <= nsec < 1_000_000_000:
            raise WireGuardError(f"handshake nanoseconds out of range: {nsec}")
        peer.handshake = sec + nsec / 1e9
    peer.rx = _number(_first(attrs, WGPEER_A_RX_BYTES, 8), "=Q") or peer.rx
    peer.tx = _number(_first(attrs, WGPEER_A_TX_BYTES, 8), "=Q") or peer.tx
    keepalive = _number(_first(attrs, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 2), "=H")
    if keepalive is not None:
        peer.keepalive = keepalive
    value = _first(attrs, WGPEER_A_PRESHARED_KEY, KEY_LEN)
    if value is not None:
        peer.psk = value
    for kind, group in attrs:
        if kind == WGPEER_A_ALLOWEDIPS:
            for _, allowed in walk(group):
                peer.allowed.append(_allowed_ip(walk(allowed)))


def _allowed_ip(attrs: list[tuple[int, bytes]]) -> str:
    """``addr/cidr`` of one WGALLOWEDIP nest (re-creating a peer needs them all)."""
    family = _number(_first(attrs, WGALLOWEDIP_A_FAMILY, 2), "=H")
    raw = _first(attrs, WGALLOWEDIP_A_IPADDR, 4, 16)
    cidr = _number(_first(attrs, WGALLOWEDIP_A_CIDR_MASK, 1), "=B")
    if raw is None or cidr is None:
        raise WireGuardError("netlink allowed IP without an address or mask")
    address = ipaddress.ip_address(raw)
    expected = socket.AF_INET if address.version == 4 else socket.AF_INET6
    if family != expected or not 0 <= cidr <= address.max_prefixlen:
        raise WireGuardError("netlink allowed IP with an inconsistent family or mask")
    return f"{address}/{cidr}"


def _endpoint(value: bytes) -> str:
    """``ip:port`` / ``[ip%zone]:port`` from a sockaddr whose size gave its family."""
    expected = socket.AF_INET if len(value) == SOCKADDR_IN else socket.AF_INET6
    (family,) = struct.unpack_from("=H", value)
    if family != expected:
        raise WireGuardError(f"unexpected endpoint address family {family} in netlink reply")
    (port,) = struct.unpack_from("!H", value, 2)
    if family == socket.AF_INET:
        host = str(ipaddress.IPv4Address(value[4:8]))
    else:
        host = str(ipaddress.IPv6Address(value[8:24]))
        (scope,) = struct.unpack_from("=I", value, 24)
        if scope:
            host = f"{host}%{scope}"
    try:
        return format_endpoint(host, port)
    except ValueError:
        raise WireGuardError(f"unusable endpoint {host} port {port} in netlink reply") from None


# ---- the conversation ---------------------------------------------------------------------


def split_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, whole message) for each netlink message in one datagram."""
    out = []
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, mtype, flags, seq, _pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size or offset + length > len(data):
            raise WireGuardError("truncated netlink message")
        out.append((mtype, flags, seq, data[offset : offset + length]))
        offset += (length + 3) & ~3
    return out


class _Conversation:
    """Requests and replies on one netlink socket, matched by sequence number."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.seq = itertools.count(1)

    async def request(self, payload: bytes, msg_type: int, flags: int) -> list[bytes]:
        """Send ``payload`` (generic netlink header and attributes); return the reply messages
        (without ACK/DONE). Raises NetlinkErrno."""
        seq = next(self.seq)
        header = NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), msg_type, flags, seq, 0)
        await self.loop.sock_sendall(self.sock, header + payload)
        replies: list[bytes] = []
        interrupted = False
        while True:
            data = await self.loop.sock_recv(self.sock, RECV_SIZE)
            if not data:
                raise WireGuardError("netlink socket closed")
            for mtype, mflags, mseq, chunk in split_messages(data):
                if mseq != seq:
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_ERROR:
                    code = _errno(chunk)
                    if code:
                        raise NetlinkErrno(code)
                    return replies  # the ACK
                if mflags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_DONE:
                    code = _errno(chunk)
                    if code:
                        raise NetlinkErrno(code)
                    if interrupted:
                        raise DumpInterrupted()
                    return replies
                replies.append(chunk)
                if len(replies) > MAX_REPLY_MESSAGES:
                    raise WireGuardError("netlink reply too long")
                if not mflags & NLM_F_MULTI and not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return replies  # a single answer, nothing else will come


def _errno(chunk: bytes) -> int:
    """The errno of NLMSG_ERROR / NLMSG_DONE (negative in the message), as a positive code."""
    if len(chunk) < NLMSG_HDR.size + 4:
        return 0
    (code,) = struct.unpack_from("=i", chunk, NLMSG_HDR.size)
    return -code if code < 0 else 0


class NetlinkBackend:
    """WireGuard devices run by the Linux kernel module."""

    kind = "kernel"

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        socket_factory: Callable[[], socket.socket] = open_genl_socket,
    ) -> None:
        self.timeout = timeout
        self.socket_factory = socket_factory

    def __repr__(self) -> str:
        return "NetlinkBackend()"

    async def read_device(self, ifname: str) -> DeviceInfo:
        check_ifname(ifname)
        for _ in range(DUMP_RETRIES):
            try:
                chunks = await self._run(
                    ifname, build_get_request(ifname), NLM_F_REQUEST | NLM_F_DUMP, "read"
                )
            except DumpInterrupted:
                log.debug("netlink dump interrupted iface=%s; retrying", ifname)
                continue
            return parse_device_dump(ifname, chunks)
        raise WireGuardError(f"{ifname} kept changing while being read; try again")

    async def set_endpoint(
        self, ifname: str, public_key: bytes, endpoint: str, *, keepalive: int | None = None
    ) -> None:
        check_ifname(ifname)
        msg = build_set_endpoint_request(ifname, public_key, endpoint, keepalive=keepalive)
        if keepalive:
            # the kernel sends at once only on a 0 -> N transition: go through 0 first
            off = build_set_endpoint_request(ifname, public_key, endpoint, keepalive=0)
            await self._run(ifname, off, NLM_F_REQUEST | NLM_F_ACK, "set a peer endpoint on")
        await self._run(ifname, msg, NLM_F_REQUEST | NLM_F_ACK, "set a peer endpoint on")

    async def reset_peer(self, ifname: str, peer: PeerInfo, endpoint: str, keepalive: int) -> None:
        """Re-create the peer (as read: allowed IPs, preshared key) in one request, so an
        attempt made before its endpoint was known does not hold the handshake back 5 s.

        A peer with more allowed IPs than one request carries safely only gets the endpoint
        and the kick (the hold-back then applies, as before).
        """
        check_ifname(ifname)
        if len(peer.allowed_ips) > MAX_RESET_ALLOWED_IPS:
            await self.set_endpoint(ifname, peer.public_key, endpoint, keepalive=keepalive)
            return
        msg = build_reset_peer_request(ifname, peer, endpoint, keepalive)
        await self._run(ifname, msg, NLM_F_REQUEST | NLM_F_ACK, "re-create a peer on")

    async def _run(self, ifname: str, msg: bytes, flags: int, action: str) -> list[bytes]:
        """Resolve the family and send one request on a fresh socket, bounded in time."""
        try:
            sock = self.socket_factory()
        except OSError as exc:
            raise WireGuardError(f"cannot open a netlink socket: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                talk = _Conversation(sock)
                try:
                    family_chunks = await talk.request(
                        build_family_request(), GENL_ID_CTRL, NLM_F_REQUEST
                    )
                except NetlinkErrno as exc:
                    if exc.code == errno.ENOENT:
                        raise DeviceNotFound(
                            f"no kernel WireGuard interface {ifname}: the wireguard module is "
                            "not loaded"
                        ) from None
                    raise _translate(exc, ifname, "look up WireGuard for") from None
                family = parse_family_reply(family_chunks)
                log.debug("netlink %s iface=%s family=%d", _CMD_NAMES[msg[0]], ifname, family)
                try:
                    return await talk.request(msg, family, flags)
                except NetlinkErrno as exc:
                    raise _translate(exc, ifname, action) from None
        except TimeoutError:
            raise WireGuardError(
                f"the kernel did not answer for {ifname} within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise WireGuardError(
                f"netlink I/O failed for {ifname}: {exc.strerror or exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                sock.close()


_CMD_NAMES = {WG_CMD_GET_DEVICE: "get_device", WG_CMD_SET_DEVICE: "set_device"}


def _translate(exc: NetlinkErrno, ifname: str, action: str) -> WireGuardError:
    if exc.code == errno.ENODEV:
        return DeviceNotFound(f"no interface {ifname}")
    if exc.code == errno.EOPNOTSUPP:
        return DeviceNotFound(f"{ifname} is not a kernel WireGuard interface")
    if exc.code in (errno.EPERM, errno.EACCES):
        return WireGuardError(
            f"permission denied to {action} {ifname}: stunmeshd needs CAP_NET_ADMIN "
            "(run it as root, as its systemd unit does)"
        )
    return WireGuardError(f"the kernel refused to {action} {ifname}: {os.strerror(exc.code)}")
