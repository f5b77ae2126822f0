"""Kernel WireGuard driven through generic netlink (the ``wireguard`` family).

Messages are encoded and decoded by pyroute2's own WireGuard message class (``wgmsg``) and the
generic netlink control message (``ctrlmsg``); the conversation itself is a few lines of
asyncio on a non-blocking ``AF_NETLINK`` socket. pyroute2 0.9's ``AsyncWireGuard`` binds inside
its endpoint set-up with a port search that needs a real netlink socket and builds its set
request internally from base64 keys, so it can be neither fed a stand-in socket in tests nor
asked for an update-only endpoint change with exactly the attributes we want; its message
classes can, and they are the part that knows the kernel's layout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import itertools
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

from pyroute2.netlink import (
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    ctrlmsg,
)
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_GET_DEVICE,
    WG_CMD_SET_DEVICE,
    WG_GENL_NAME,
    WG_GENL_VERSION,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    WGPEER_F_UPDATE_ONLY,
    wgmsg,
)

from stunmeshd.endpoints import format_endpoint, parse_endpoint
from stunmeshd.errors import DeviceNotFound, WireGuardError
from stunmeshd.wireguard.base import DeviceInfo, PeerInfo, device_info
from stunmeshd.wireguard.uapi import DEFAULT_TIMEOUT, KEY_LEN, check_ifname

log = logging.getLogger(__name__)

NETLINK_GENERIC = 16
NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RECV_SIZE = 1 << 16  # the kernel caps dump datagrams at 32 KiB
DUMP_RETRIES = 3  # a dump interrupted by a concurrent peer change is simply asked again
MAX_REPLY_MESSAGES = 100_000
NLA_HDR_LEN = 4
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


# ---- messages (pure: encode requests, decode replies) ----------------------------------------


def build_family_request() -> ctrlmsg:
    """CTRL_CMD_GETFAMILY for "wireguard": the family id is assigned when the module loads."""
    msg = ctrlmsg()
    msg["cmd"] = CTRL_CMD_GETFAMILY
    msg["version"] = 1
    msg["attrs"] = [["CTRL_ATTR_FAMILY_NAME", WG_GENL_NAME]]
    return msg


def parse_family_reply(chunks: list[bytes]) -> int:
    """The family id from the CTRL_CMD_NEWFAMILY answer."""
    for chunk in chunks:
        try:
            reply = ctrlmsg(chunk)
            reply.decode()
            family = reply.get_attr("CTRL_ATTR_FAMILY_ID")
        except Exception:  # pyroute2 decoders raise anything on malformed input
            raise WireGuardError("malformed generic netlink family reply") from None
        if isinstance(family, int) and family > 0:
            return family
    raise WireGuardError("generic netlink did not return the wireguard family id")


def build_get_request(ifname: str) -> wgmsg:
    """WG_CMD_GET_DEVICE by name (sent as a dump: big devices span several messages)."""
    msg = wgmsg()
    msg["cmd"] = WG_CMD_GET_DEVICE
    msg["version"] = WG_GENL_VERSION
    msg["attrs"] = [["WGDEVICE_A_IFNAME", ifname]]
    return msg


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise WireGuardError(f"{what} must be 32 bytes")


def _sockaddr(endpoint: str) -> dict[str, Any]:
    """pyroute2's WGPEER_A_ENDPOINT value for ``ip:port`` / ``[ip%zone]:port``."""
    try:
        host, port, _ = parse_endpoint(endpoint)
        format_endpoint(host, port)
    except (ValueError, TypeError, AttributeError):
        raise WireGuardError(f"malformed endpoint {endpoint!r}") from None
    sockaddr: dict[str, Any] = {"addr": host, "port": port}
    if "%" in host:
        zone = host.partition("%")[2]
        sockaddr["addr"] = host.partition("%")[0]
        sockaddr["scope_id"] = _swap32(_zone_index(zone))
    return sockaddr


def _keepalive_attr(keepalive: int) -> list[Any]:
    if isinstance(keepalive, bool) or not isinstance(keepalive, int):
        raise WireGuardError(f"keepalive must be an integer, not {keepalive!r}")
    if not 0 <= keepalive <= 65535:
        raise WireGuardError(f"keepalive out of range (0-65535): {keepalive}")
    return ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", keepalive]


def _set_device(ifname: str, peers: list[list[list[Any]]]) -> wgmsg:
    msg = wgmsg()
    msg["cmd"] = WG_CMD_SET_DEVICE
    msg["version"] = WG_GENL_VERSION
    msg["attrs"] = [
        ["WGDEVICE_A_IFNAME", ifname],
        ["WGDEVICE_A_PEERS", [{"attrs": peer} for peer in peers]],
    ]
    return msg


def build_set_endpoint_request(
    ifname: str, public_key: bytes, endpoint: str, *, keepalive: int | None = None
) -> wgmsg:
    """WG_CMD_SET_DEVICE with one peer flagged WGPEER_F_UPDATE_ONLY (never creates a peer)."""
    _check_key(public_key, "peer public key")
    peer: list[list[Any]] = [
        ["WGPEER_A_PUBLIC_KEY", base64.b64encode(public_key)],
        ["WGPEER_A_FLAGS", WGPEER_F_UPDATE_ONLY],
        ["WGPEER_A_ENDPOINT", _sockaddr(endpoint)],
    ]
    if keepalive is not None:
        peer.append(_keepalive_attr(keepalive))
    return _set_device(ifname, [peer])


def _allowed_ip_attrs(cidr: str) -> dict[str, Any]:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise WireGuardError(f"malformed allowed IP {cidr!r}") from None
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", net.network_address.packed],
            ["WGALLOWEDIP_A_CIDR_MASK", net.prefixlen],
        ]
    }


def build_reset_peer_request(ifname: str, peer: PeerInfo, endpoint: str, keepalive: int) -> wgmsg:
    """One WG_CMD_SET_DEVICE that removes ``peer`` and adds it again: same preshared key and
    allowed IPs, the new endpoint, keepalive on.

    The kernel applies the peers of one request in order under its device lock, so nothing
    sees the peer missing; the new peer is not held back by an earlier attempt, and its
    keepalive (0 -> N) makes it initiate a handshake at once.
    """
    _check_key(peer.public_key, "peer public key")
    key = base64.b64encode(peer.public_key)
    again: list[list[Any]] = [
        ["WGPEER_A_PUBLIC_KEY", key],
        ["WGPEER_A_FLAGS", WGPEER_F_REPLACE_ALLOWEDIPS],
        ["WGPEER_A_ENDPOINT", _sockaddr(endpoint)],
        _keepalive_attr(keepalive),
    ]
    if peer.preshared_key and any(peer.preshared_key):
        _check_key(peer.preshared_key, "preshared key")
        again.append(["WGPEER_A_PRESHARED_KEY", base64.b64encode(peer.preshared_key)])
    if peer.allowed_ips:
        again.append(["WGPEER_A_ALLOWEDIPS", [_allowed_ip_attrs(ip) for ip in peer.allowed_ips]])
    removal: list[list[Any]] = [
        ["WGPEER_A_PUBLIC_KEY", key],
        ["WGPEER_A_FLAGS", WGPEER_F_REMOVE_ME],
    ]
    return _set_device(ifname, [removal, again])


def _zone_index(zone: str) -> int:
    if zone.isdigit():
        return int(zone)
    try:
        return socket.if_nametoindex(zone)
    except OSError:
        raise WireGuardError(f"unknown interface {zone!r} in endpoint zone") from None


def _swap32(value: int) -> int:
    """pyroute2 packs sin6_scope_id big-endian; the kernel reads it in host order."""
    return int.from_bytes(value.to_bytes(4, sys.byteorder), "big")


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

    Anything pyroute2 cannot decode, or values out of their kernel ranges, raise WireGuardError
    (without echoing the bytes: they hold the private key).
    """
    try:
        return _parse_device_dump(ifname, chunks)
    except WireGuardError:
        raise
    except Exception as exc:  # pyroute2 decoders raise anything on malformed input
        raise WireGuardError(
            f"malformed netlink reply for {ifname} ({type(exc).__name__})"
        ) from None


def _parse_device_dump(ifname: str, chunks: Iterable[bytes]) -> DeviceInfo:
    private_key: bytes | None = None
    listen_port = 0
    fwmark = 0
    peers: dict[bytes, _Peer] = {}
    for chunk in chunks:
        msg = wgmsg(chunk)
        msg.decode()
        value = _attr(msg, "WGDEVICE_A_PRIVATE_KEY", KEY_LEN)
        if value is not None:
            private_key = _key(value, "private key")
        value = _attr(msg, "WGDEVICE_A_LISTEN_PORT", 2)
        if value is not None:
            listen_port = int(value)
        value = _attr(msg, "WGDEVICE_A_FWMARK", 4)
        if value is not None:
            fwmark = int(value)
        for group in msg.get_attrs("WGDEVICE_A_PEERS"):
            for nest in group or ():
                _merge_peer(peers, nest)
    frozen = {key: peer.freeze() for key, peer in peers.items()}
    return device_info(ifname, private_key, listen_port, fwmark, frozen)


def _merge_peer(peers: dict[bytes, _Peer], nest: Any) -> None:
    value = _attr(nest, "WGPEER_A_PUBLIC_KEY", KEY_LEN)
    if value is None:
        raise WireGuardError("netlink peer without a public key")
    key = _key(value, "peer public key")
    peer = peers.get(key)
    if peer is None:
        peer = peers[key] = _Peer(key)
    value = _attr(nest, "WGPEER_A_ENDPOINT", SOCKADDR_IN, SOCKADDR_IN6)
    if value is not None:
        size = _size(nest, "WGPEER_A_ENDPOINT")
        peer.endpoint = _endpoint(value, socket.AF_INET if size == SOCKADDR_IN else socket.AF_INET6)
    value = _attr(nest, "WGPEER_A_LAST_HANDSHAKE_TIME", 16)
    if value is not None:
        sec, nsec = int(value["tv_sec"]), int(value["tv_nsec"])
        if not 0 <= nsec < 1_000_000_000:
            raise WireGuardError(f"handshake nanoseconds out of range: {nsec}")
        peer.handshake = sec + nsec / 1e9
    value = _attr(nest, "WGPEER_A_RX_BYTES", 8)
    if value is not None:
        peer.rx = int(value)
    value = _attr(nest, "WGPEER_A_TX_BYTES", 8)
    if value is not None:
        peer.tx = int(value)
    value = _attr(nest, "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 2)
    if value is not None:
        peer.keepalive = int(value)
    value = _attr(nest, "WGPEER_A_PRESHARED_KEY", KEY_LEN)
    if value is not None:
        peer.psk = _key(value, "preshared key")
    for group in nest.get_attrs("WGPEER_A_ALLOWEDIPS"):
        for allowed in group or ():
            peer.allowed.append(_allowed_ip(allowed))


def _allowed_ip(nest: Any) -> str:
    """``addr/cidr`` of one WGALLOWEDIP nest (re-creating a peer needs them all)."""
    family = _attr(nest, "WGALLOWEDIP_A_FAMILY", 2)
    raw = _attr(nest, "WGALLOWEDIP_A_IPADDR", 4, 16)
    cidr = _attr(nest, "WGALLOWEDIP_A_CIDR_MASK", 1)
    if raw is None or cidr is None:
        raise WireGuardError("netlink allowed IP without an address or mask")
    packed = bytes.fromhex(str(raw).replace(":", ""))
    address = ipaddress.ip_address(packed)
    expected = socket.AF_INET if address.version == 4 else socket.AF_INET6
    if family != expected or not 0 <= int(cidr) <= address.max_prefixlen:
        raise WireGuardError("netlink allowed IP with an inconsistent family or mask")
    return f"{address}/{int(cidr)}"


def _attr(container: Any, name: str, *sizes: int) -> Any:
    """The first ``name`` attribute's decoded value, after checking its payload size.

    pyroute2 decodes fixed-size attributes (keys, sockaddrs, integers) with struct formats and
    does not compare them with the attribute's length, so a short attribute would be read on
    into its neighbours; the kernel's sizes are exact, anything else is refused here.
    """
    size = _size(container, name)
    if size is None:
        return None
    if size not in sizes:
        raise WireGuardError(f"{name} attribute of unexpected size in netlink reply")
    return container.get_attr(name)


def _size(container: Any, name: str) -> int | None:
    """Payload size of the first ``name`` attribute (from its header), None when absent."""
    for slot in container["attrs"]:
        if slot[0] == name:
            length = getattr(slot.cell[1], "length", None)
            return -1 if length is None else length - NLA_HDR_LEN
    return None


def _key(value: Any, what: str) -> bytes:
    """pyroute2 hands keys over base64-encoded; WireGuard keys are 32 raw bytes."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != KEY_LEN:
        raise WireGuardError(f"malformed {what} in netlink reply")
    return raw


def _endpoint(value: Any, expected_family: int) -> str:
    """``ip:port`` / ``[ip]:port`` from a decoded sockaddr whose size gave ``expected_family``."""
    family = value.get("family") if isinstance(value, dict) else None
    if family != expected_family:
        raise WireGuardError(f"unexpected endpoint address family {family} in netlink reply")
    host = str(value["addr"])
    scope = int(value.get("scope_id") or 0)
    if family == socket.AF_INET6 and scope:
        host = f"{host}%{_swap32(scope)}"
    try:
        return format_endpoint(host, int(value["port"]))
    except ValueError:
        raise WireGuardError(
            f"unusable endpoint {host} port {value['port']} in netlink reply"
        ) from None


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

    async def request(self, msg: Any, msg_type: int, flags: int) -> list[bytes]:
        """Send ``msg``; return the reply messages (without ACK/DONE). Raises NetlinkErrno."""
        seq = next(self.seq)
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg.encode()
        await self.loop.sock_sendall(self.sock, msg.data)
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

    async def _run(self, ifname: str, msg: Any, flags: int, action: str) -> list[bytes]:
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
                log.debug("netlink %s iface=%s family=%d", _CMD_NAMES[msg["cmd"]], ifname, family)
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
