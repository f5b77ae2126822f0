"""A STUN transport over an ordinary UDP socket: for probes that need no privilege and no
WireGuard port (``stunmeshctl netcheck``). The daemon itself uses ``rawsock`` instead."""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType

from stunmeshd.stun.client import Address


class UdpStunTransport:
    """``async with UdpStunTransport(family, port=0) as t``: send/recv on one bound socket."""

    def __init__(self, family: int, port: int = 0) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be AF_INET or AF_INET6, not {family!r}")
        self.family = family
        self.requested_port = port
        self.sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The local port the probes leave from (the one the NAT maps)."""
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    async def __aenter__(self) -> UdpStunTransport:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", self.requested_port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def send(self, data: bytes, addr: Address) -> None:
        assert self.sock is not None
        await asyncio.get_running_loop().sock_sendto(self.sock, data, addr)

    async def recv(self) -> tuple[bytes, Address]:
        assert self.sock is not None
        data, source = await asyncio.get_running_loop().sock_recvfrom(self.sock, 2048)
        return data, (str(source[0]), int(source[1]))


def local_address(family: int, server: Address) -> str | None:
    """The address this host would send from towards ``server`` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(server)
        except OSError:
            return None
        return str(sock.getsockname()[0])
