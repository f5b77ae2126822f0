"""STUN from WireGuard's own UDP port, through a Linux raw socket and a classic BPF filter.

WireGuard keeps its socket; we cannot bind the port a second time. So requests go out
through a raw ``IPPROTO_UDP`` socket with a hand-built UDP header whose source port is
WireGuard's — the NAT maps them exactly like WireGuard's traffic — and the answers, which the
kernel also hands to WireGuard (it drops them harmlessly), are picked out for us by a BPF
filter: UDP to our port carrying the STUN magic cookie. Needs CAP_NET_RAW (CAP_NET_ADMIN too
for a fwmark).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import socket
import struct
from collections.abc import Callable, Sequence
from types import TracebackType

from stunmeshd.errors import StunError
from stunmeshd.stun.codec import MAGIC_COOKIE

SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>; not exported by Python's socket module
SO_MARK = getattr(socket, "SO_MARK", 36)
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)  # option 7 at IPPROTO_IPV6
UDP_CHECKSUM_OFFSET = 6  # where the kernel writes the IPv6 UDP checksum (RFC 768 layout)
UDP_HEADER = struct.Struct("!HHHH")
RECV_SIZE = 65535

# classic BPF opcodes (<linux/filter.h>)
_LD_B_ABS = 0x30
_LD_H_ABS = 0x28
_LD_W_ABS = 0x20
_LD_H_IND = 0x48
_LD_W_IND = 0x40
_LDX_B_MSH = 0xB1
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06
_ACCEPT = 0x40000  # bytes to keep: all of any datagram
_DROP = 0

SockFactory = Callable[[int, int, int], socket.socket]
Instruction = tuple[int, int, int, int]  # code, jt, jf, k


def _assemble(program: Sequence[tuple[int, str | int, str | int, int]]) -> list[Instruction]:
    """Resolve label jumps ("drop"/"accept") to the relative offsets BPF wants."""
    labels = {"accept": len(program) - 2, "drop": len(program) - 1}
    out: list[Instruction] = []
    for i, (code, jt, jf, k) in enumerate(program):
        rel = [labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
        out.append((code, rel[0], rel[1], k))
    return out


def ipv4_filter(port: int) -> list[Instruction]:
    """Accept UDP to ``port`` with the magic cookie; the program sees the IPv4 header."""
    return _assemble(
        [
            (_LD_B_ABS, 0, 0, 9),  # A = protocol
            (_JEQ_K, 0, "drop", socket.IPPROTO_UDP),
            (_LD_H_ABS, 0, 0, 6),  # A = flags | fragment offset
            (_JSET_K, "drop", 0, 0x1FFF),  # a non-first fragment carries no UDP header
            (_LDX_B_MSH, 0, 0, 0),  # X = 4 * IHL: options are allowed
            (_LD_H_IND, 0, 0, 2),  # A = UDP destination port
            (_JEQ_K, 0, "drop", port),
            (_LD_W_IND, 0, 0, 8 + 4),  # A = 32 bits at payload offset 4
            (_JEQ_K, 0, "drop", MAGIC_COOKIE),
            (_RET_K, 0, 0, _ACCEPT),
            (_RET_K, 0, 0, _DROP),
        ]
    )


def ipv6_filter(port: int) -> list[Instruction]:
    """The same for IPv6, whose raw sockets start the packet at the UDP header."""
    return _assemble(
        [
            (_LD_H_ABS, 0, 0, 2),  # A = UDP destination port
            (_JEQ_K, 0, "drop", port),
            (_LD_W_ABS, 0, 0, 8 + 4),  # A = 32 bits at payload offset 4
            (_JEQ_K, 0, "drop", MAGIC_COOKIE),
            (_RET_K, 0, 0, _ACCEPT),
            (_RET_K, 0, 0, _DROP),
        ]
    )


def _pack(program: Sequence[Instruction]) -> bytes:
    return b"".join(struct.pack("HBBI", *ins) for ins in program)  # struct sock_filter


def _attach_packed(sock: socket.socket, code: bytes) -> array.array[int]:
    # struct sock_fprog points at the instructions: array's buffer_info() gives their address
    # (the documented way to hand a buffer to ioctl-style calls; ctypes would cost ~0.3 MB)
    buffer = array.array("B", code)
    address, _ = buffer.buffer_info()
    fprog = struct.pack("HL", len(code) // 8, address)  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    return buffer


def attach_filter(sock: socket.socket, program: Sequence[Instruction]) -> array.array[int]:
    """SO_ATTACH_FILTER; returns the instruction buffer, which must outlive the call."""
    return _attach_packed(sock, _pack(program))


@functools.lru_cache(maxsize=64)
def _packed_filter(family: int, port: int) -> bytes:
    """The filter for (family, port), assembled once: each discovery opens a new socket."""
    return _pack(ipv4_filter(port) if family == socket.AF_INET else ipv6_filter(port))


def unwrap_ipv4(packet: bytes, port: int) -> tuple[bytes, tuple[str, int]] | None:
    """UDP payload and source of an IPv4 packet to ``port``; None if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 8:
        return None
    sport, dport, length, _ = UDP_HEADER.unpack_from(packet, ihl)
    if dport != port or length < 8 or ihl + length > len(packet):
        return None
    if int.from_bytes(packet[6:8], "big") & 0x1FFF:
        return None  # a non-first fragment: no UDP header here
    source = socket.inet_ntop(socket.AF_INET, packet[12:16])
    return packet[ihl + 8 : ihl + length], (source, sport)


def unwrap_ipv6(datagram: bytes, source: str, port: int) -> tuple[bytes, tuple[str, int]] | None:
    """UDP payload and source of what an IPv6 raw socket returns (no IP header)."""
    if len(datagram) < 8:
        return None
    sport, dport, length, _ = UDP_HEADER.unpack_from(datagram)
    if dport != port or length < 8 or length > len(datagram):
        return None
    return datagram[8:length], (source.split("%", 1)[0], sport)


class RawStunTransport:
    """A DatagramTransport that sends from, and listens on, another program's UDP port.

    Opened per discovery (``async with``). ``sock_factory(family, type, proto)`` creates the
    socket — tests pass one that makes it inside a lab network namespace.
    """

    def __init__(
        self,
        family: int,
        port: int,
        *,
        fwmark: int = 0,
        sock_factory: SockFactory | None = None,
    ) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be AF_INET or AF_INET6, not {family!r}")
        # port and fwmark come from the WireGuard device: refuse them as a discovery failure
        if not isinstance(port, int) or not 0 < port <= 0xFFFF:
            raise StunError(f"no usable WireGuard listen port to discover from: {port!r}")
        if not isinstance(fwmark, int) or not 0 <= fwmark <= 0xFFFFFFFF:
            raise StunError(f"fwmark out of range: {fwmark!r}")
        self.family = family
        self.port = port
        self.fwmark = fwmark
        self._sock_factory: SockFactory = sock_factory or socket.socket
        self._sock: socket.socket | None = None
        self._filter: array.array[int] | None = None

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        family = "ipv4" if self.family == socket.AF_INET else "ipv6"
        return f"<RawStunTransport {family} port={self.port} fwmark={self.fwmark:#x} {state}>"

    async def __aenter__(self) -> RawStunTransport:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create the socket, attach the filter, set the mark, drop what queued before."""
        if self._sock is not None:
            return
        try:
            sock = self._sock_factory(self.family, socket.SOCK_RAW, socket.IPPROTO_UDP)
        except PermissionError:
            raise StunError(
                "STUN from WireGuard's port needs a raw socket: CAP_NET_RAW is missing"
            ) from None
        except OSError as exc:
            raise StunError(f"cannot open a raw socket: {exc.strerror or exc}") from None
        try:
            sock.setblocking(False)
            self._filter = _attach_packed(sock, _packed_filter(self.family, self.port))
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, UDP_CHECKSUM_OFFSET)
            if self.fwmark:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.fwmark)
                except PermissionError:
                    raise StunError(
                        f"cannot set fwmark {self.fwmark:#x}: CAP_NET_ADMIN is missing"
                    ) from None
            self._drain(sock)
        except OSError as exc:
            sock.close()
            raise StunError(f"cannot set up the raw socket: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Packets that queued before the filter was attached passed no filter: drop them."""
        while True:
            try:
                sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return

    def close(self) -> None:
        if self._sock is not None:
            # Drop any reader still registered for this fd first: a stale registration
            # would otherwise meet the next socket that reuses the descriptor number.
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._filter = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise StunError("the raw STUN transport is not open")
        return self._sock

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send ``data`` as a UDP datagram from our port to ``addr``."""
        sock = self._socket()
        header = UDP_HEADER.pack(self.port, addr[1], UDP_HEADER.size + len(data), 0)
        # The kernel fills the IPv6 checksum (IPV6_CHECKSUM); 0 means "none" on IPv4.
        # A raw socket's sendto port must be 0 (IPv6) or is ignored (IPv4).
        await asyncio.get_running_loop().sock_sendto(sock, header + data, (addr[0], 0))

    async def recv(self) -> tuple[bytes, tuple[str, int]]:
        """The next UDP payload to our port that passed the filter, with its source."""
        sock = self._socket()
        loop = asyncio.get_running_loop()
        while True:
            packet, source = await loop.sock_recvfrom(sock, RECV_SIZE)
            if self.family == socket.AF_INET:
                unwrapped = unwrap_ipv4(packet, self.port)
            else:
                unwrapped = unwrap_ipv6(packet, source[0], self.port)
            if unwrapped is not None:
                return unwrapped
