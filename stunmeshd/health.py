"""Is a tunnel alive? Handshake age, a traffic stall, or ICMP pings through the tunnel.

stunmesh-go notices a broken path only by ICMP pings (``ping_monitor``) or at its next refresh.
stunmeshd also reads WireGuard's own counters: when we keep sending and nothing comes back for a
few seconds, the path is broken (typically a NAT re-mapped a port) long before the handshake
goes stale. Pings, when configured, are honoured too — with the per-peer interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass

KEEPALIVE_BYTES = 32  # a WireGuard keepalive as the tx/rx counters count it
STALL_AFTER = 2.0  # s of silence, while we were sending data, before a path counts as broken


@dataclass
class TrafficWatch:
    """Detects "we send, nothing comes back" from WireGuard's rx/tx byte counters.

    Keepalives alone never count as sending data (an idle tunnel is not a broken one), and a
    stall is reported once until traffic flows again.
    """

    stall_after: float = STALL_AFTER
    _rx: int = -1
    _tx: int = -1
    _last_rx_change: float = 0.0
    _tx_since_rx: int = 0
    _reported: bool = False
    busy: bool = False  # data (not just keepalives) was sent since the previous sample

    def observe(self, rx: int, tx: int, now: float | None = None) -> bool:
        """Feed the latest counters; True once when the path has just been found broken."""
        now = time.monotonic() if now is None else now
        self.busy = self._tx >= 0 and tx - self._tx > KEEPALIVE_BYTES
        if self._rx < 0 or rx < self._rx or tx < self._tx:  # first sample or counters reset
            self._rx, self._tx, self._last_rx_change = rx, tx, now
            self._tx_since_rx, self._reported = 0, False
            return False
        if rx != self._rx:
            self._rx, self._tx, self._last_rx_change = rx, tx, now
            self._tx_since_rx, self._reported = 0, False
            return False
        self._tx_since_rx += tx - self._tx
        self._tx = tx
        sending_data = self._tx_since_rx > 2 * KEEPALIVE_BYTES
        if sending_data and not self._reported and now - self._last_rx_change >= self.stall_after:
            self._reported = True
            return True
        return False

    @property
    def stalled(self) -> bool:
        """A stall was reported and nothing has been received since."""
        return self._reported

    def reset(self) -> None:
        self._rx = self._tx = -1
        self._reported = False


# ---- ICMP echo (ping_monitor / per-peer ping) ------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes, *, v6: bool) -> bytes:
    """An ICMP (or ICMPv6: the kernel fills its checksum) echo request."""
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq) + payload


async def resolve_ping_target(target: str, timeout: float) -> str:
    """The address to ping for ``target``: itself when it is an IP address, else its first
    IPv4 address (stunmesh-go resolves ping targets as "ip4"). The lookup runs in the loop's
    resolver thread, bounded by ``timeout``. Raises OSError or TimeoutError."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(target, None, family=socket.AF_INET, type=socket.SOCK_RAW)
    if not infos:
        raise OSError(f"{target} has no IPv4 address")
    return str(infos[0][4][0])


async def ping(target: str, timeout: float, *, mark: int = 0) -> bool:
    """One ICMP echo to ``target``; True when the matching reply arrives within ``timeout``.

    Uses a raw socket (the daemon has CAP_NET_RAW); never blocks the loop.
    """
    addr = ipaddress.ip_address(target)
    v6 = addr.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    loop = asyncio.get_running_loop()
    ident, seq = os.getpid() & 0xFFFF, int.from_bytes(os.urandom(2), "big")
    payload = b"stunmeshd" + os.urandom(8)
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        sock.setblocking(False)
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        await loop.sock_sendto(sock, echo_request(ident, seq, payload, v6=v6), (target, 0))
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), left)
            except TimeoutError:
                return False
            if ipaddress.ip_address(source[0]) != addr:
                continue
            icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
            reply_type = 129 if v6 else 0
            with contextlib.suppress(struct.error):
                kind, _code, _sum, r_ident, r_seq = struct.unpack_from("!BBHHH", icmp)
                if (
                    kind == reply_type
                    and r_seq == seq
                    and icmp[8:] == payload
                    and (v6 or r_ident == ident)
                ):
                    return True
    return False
