"""Watch the host's network (RTNL): links coming and going, addresses and default routes.

stunmesh-go has to be restarted when a WireGuard interface is re-created and notices a new
uplink only at its next refresh. stunmeshd subscribes to rtnetlink instead: a managed
interface appearing or vanishing is re-read at once, and an address or default-route change
elsewhere on the host re-runs discovery (the public mapping may have moved).

Nothing is lost in a burst: the socket has a large receive buffer, and if the kernel still
overflows it (ENOBUFS) every listener is told "anything may have changed".

The few rtnetlink fields needed (a link's index and name, an address's link, a route's
prefix length and table) are read with ``struct`` from a plain ``AF_NETLINK`` socket: a
netlink library would cost the daemon ~12 MB of memory for them (see bench/footprint.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

# rtnetlink (linux/rtnetlink.h, linux/netlink.h)
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME = 3
RT_TABLE_COMPAT, RT_TABLE_MAIN = 252, 254

NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, ...
RTATTR = struct.Struct("=HH")  # len, type

RCVBUF = 4 * 1024 * 1024
RECV_SIZE = 1 << 16  # one datagram; the kernel's dump batches fit in a page or two
RESTART_DELAY = 1.0  # s before re-opening the socket after an error
DUMP_SEQ = 1

LinkHandler = Callable[[str, bool], None]  # (ifname, present)
ChangeHandler = Callable[[str], None]  # (reason)


@dataclass(frozen=True, slots=True)
class RtEvent:
    """One rtnetlink message, reduced to what NetWatch looks at."""

    kind: int  # RTM_NEWLINK, RTM_DELADDR, ...
    index: int = 0  # the link (link and address messages)
    name: str = ""  # IFLA_IFNAME (link messages)
    dst_len: int = 1  # route prefix length: 0 is a default route
    table: int = RT_TABLE_MAIN
    dump: bool = False  # a reply to our link dump, not a change


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:
            return
        yield kind & 0x3FFF, data[offset + RTATTR.size : offset + length]
        offset += _align(length)


def parse(data: bytes, portid: int = 0) -> Iterator[RtEvent]:
    """The messages of one netlink datagram; malformed or foreign ones are skipped.

    ``portid`` is our socket's: replies to our dump carry it, change events carry the port
    of whoever made the change.

    Raises OSError for an NLMSG_ERROR reply carrying an error.
    """
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, _flags, seq, pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size or offset + length > len(data):
            return
        start, end = offset + NLMSG_HDR.size, offset + length
        offset += _align(length)
        dump = portid != 0 and pid == portid and seq == DUMP_SEQ
        if kind == NLMSG_ERROR and end - start >= 4:
            (code,) = struct.unpack_from("=i", data, start)
            if code < 0:
                raise OSError(-code, f"rtnetlink: {errno.errorcode.get(-code, code)}")
        elif kind in (RTM_NEWLINK, RTM_DELLINK) and end - start >= IFINFOMSG.size:
            index = IFINFOMSG.unpack_from(data, start)[2]
            name = ""
            for attr, value in _attrs(data, start + IFINFOMSG.size, end):
                if attr == IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode(errors="replace")
            yield RtEvent(kind, index=index, name=name, dump=dump)
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and end - start >= IFADDRMSG.size:
            yield RtEvent(kind, index=IFADDRMSG.unpack_from(data, start)[4])
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE) and end - start >= RTMSG.size:
            fields = RTMSG.unpack_from(data, start)
            yield RtEvent(kind, dst_len=fields[1], table=fields[4])


def _open_socket() -> socket.socket:
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, GROUPS))
        dump = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = NLMSG_HDR.pack(
            NLMSG_HDR.size + len(dump), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, DUMP_SEQ, 0
        )
        sock.send(header + dump)
    except BaseException:
        sock.close()
        raise
    return sock


RTM_GETADDR, RTM_GETROUTE = 22, 26
NLMSG_MIN_TYPE = 16  # below: control messages (noop, error, done, overrun)


async def rtnl_dump(kind: int, request: bytes) -> list[tuple[bytes, int]]:
    """Every (payload, offset) of a one-shot rtnetlink dump (RTM_GETROUTE, RTM_GETADDR, ...).

    ``request`` is the family header (``RTMSG``, ``IFADDRMSG``); each payload starts with the
    answer's header at ``offset``. Raises OSError for an error reply.
    """
    loop = asyncio.get_running_loop()
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    ) as sock:
        sock.bind((0, 0))
        header = NLMSG_HDR.pack(
            NLMSG_HDR.size + len(request), kind, NLM_F_REQUEST | NLM_F_DUMP, DUMP_SEQ, 0
        )
        await loop.sock_sendall(sock, header + request)
        found: list[tuple[bytes, int]] = []
        while True:
            data = await loop.sock_recv(sock, RECV_SIZE)
            offset = 0
            while offset + NLMSG_HDR.size <= len(data):
                length, mtype, _flags, _seq, _pid = NLMSG_HDR.unpack_from(data, offset)
                if length < NLMSG_HDR.size or offset + length > len(data):
                    break
                if mtype == NLMSG_DONE:
                    return found
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + NLMSG_HDR.size)
                    if code < 0:
                        raise OSError(-code, "rtnetlink dump failed")
                elif mtype >= NLMSG_MIN_TYPE:
                    found.append((data[offset : offset + length], NLMSG_HDR.size))
                offset += _align(length)
            if not data:
                return found


def attrs_of(payload: bytes, offset: int) -> dict[int, bytes]:
    """The rtattrs of one message from ``offset`` (after its family header) by type."""
    return dict(_attrs(payload, offset, len(payload)))


class NetWatch:
    """Calls ``on_link`` for link events and ``on_change`` for address/route changes.

    ``ignore()`` names interfaces whose *address* changes do not matter (the WireGuard
    interfaces themselves: their tunnel addresses say nothing about the uplink).
    """

    def __init__(
        self,
        on_link: LinkHandler,
        on_change: ChangeHandler,
        ignore: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.on_link = on_link
        self.on_change = on_change
        self.ignore = ignore
        self._names: dict[int, str] = {}  # ifindex -> name, for address events
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="netwatch")
        await asyncio.wait(
            {self._task, asyncio.ensure_future(self._ready.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock: socket.socket | None = None
            try:
                sock = _open_socket()
                portid = sock.getsockname()[0]
                while True:
                    data = await loop.sock_recv(sock, RECV_SIZE)
                    for event in parse(data, portid):
                        self._dispatch(event)
                    if _dump_done(data, portid):
                        self._ready.set()
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("netlink overflow: events lost, re-checking everything")
                    self.on_change("netlink overflow")
                else:
                    log.warning("netlink watch failed, restarting error=%s", exc)
            except Exception:
                log.exception("netlink watch failed, restarting")
            finally:
                if sock is not None:
                    sock.close()
            self._ready.set()
            await asyncio.sleep(RESTART_DELAY)

    def _dispatch(self, event: RtEvent) -> None:
        if event.kind in (RTM_NEWLINK, RTM_DELLINK):
            name = event.name or self._names.get(event.index, "")
            present = event.kind == RTM_NEWLINK
            known = event.index in self._names
            if present:
                self._names[event.index] = name
            else:
                self._names.pop(event.index, None)
            if event.dump or (present and known):
                return  # already there at start, or a flag/stats update: not a new device
            log.debug("link %s ifname=%s index=%s", "new" if present else "gone", name, event.index)
            self.on_link(name, present)
        elif event.kind in (RTM_NEWADDR, RTM_DELADDR):
            name = self._names.get(event.index, "")
            if name in self.ignore() or name == "lo":
                return
            self.on_change(
                f"address {'added' if event.kind == RTM_NEWADDR else 'removed'} "
                f"on {name or event.index}"
            )
        elif event.kind in (RTM_NEWROUTE, RTM_DELROUTE):
            if event.dst_len == 0 and event.table in (RT_TABLE_MAIN, RT_TABLE_COMPAT):
                added = event.kind == RTM_NEWROUTE
                self.on_change(f"default route {'added' if added else 'removed'}")


def _dump_done(data: bytes, portid: int) -> bool:
    """True when the datagram ends our link dump (NLMSG_DONE to our port and sequence)."""
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, _flags, seq, pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size:
            return False
        if kind == NLMSG_DONE and seq == DUMP_SEQ and pid == portid:
            return True
        offset += _align(length)
    return False
