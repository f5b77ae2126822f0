"""The port mapper's I/O: PCP and NAT-PMP over UDP to the gateway, UPnP IGD over SSDP + SOAP.

:class:`PortMapClient` performs one interface's requests; :class:`PortMapper` runs the state
machine (``machine.py``) on the event loop with it. Everything is bounded: the probe (all
three protocols in parallel, the first that answers wins) takes at most
:data:`PROBE_TIMEOUT`, a mapping request at most :data:`REQUEST_TIMEOUT`.

Safety: only the UDP port the machine names (WireGuard's) is ever mapped; UDP answers come
only from the gateway's port 5351 (a connected socket); SSDP answers whose sender or LOCATION
is outside the local network are refused and logged, as is every malformed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from stunmeshd.errors import PortMapError, PortMapParseError
from stunmeshd.netwatch import (
    IFADDRMSG,
    RT_TABLE_MAIN,
    RTM_GETADDR,
    RTM_GETROUTE,
    RTMSG,
    attrs_of,
    rtnl_dump,
)
from stunmeshd.portmap import natpmp, pcp, ssdp
from stunmeshd.portmap.machine import (
    ALL_PROTOCOLS,
    Map,
    Phase,
    PortMapMachine,
    Probe,
    Protocol,
    Status,
    Unmap,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT = 1.0  # s for the whole parallel probe
REQUEST_TIMEOUT = 3.0  # s for one mapping request (with its retransmissions)
FIRST_RETRANSMIT = 0.25  # s (RFC 6886 §3.1: 250 ms, doubling)
IGD_SEARCH_TARGET = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
DESCRIPTION = "stunmeshd WireGuard"


@dataclass(frozen=True, slots=True)
class Gateway:
    """The default IPv4 gateway and our address on its network."""

    ip: str
    local_ip: str
    network: ipaddress.IPv4Network

    def is_local(self, host: str) -> bool:
        try:
            return ipaddress.ip_address(host) in self.network
        except ValueError:
            return False


async def find_gateway() -> Gateway | None:
    """The main table's default route and the address we have on its subnet, or None.

    Read with two rtnetlink dumps (netwatch's reader: a netlink library costs ~12 MB).
    """
    best: tuple[int, str, int] | None = None
    request = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    for payload, offset in await rtnl_dump(RTM_GETROUTE, request):
        if len(payload) < offset + RTMSG.size:
            continue
        _family, dst_len, _src, _tos, table, *_ = RTMSG.unpack_from(payload, offset)
        attrs = attrs_of(payload, offset + RTMSG.size)
        if len(attrs.get(RTA_TABLE, b"")) == 4:
            (table,) = struct.unpack("=I", attrs[RTA_TABLE])
        gateway = attrs.get(RTA_GATEWAY, b"")
        if table != RT_TABLE_MAIN or dst_len != 0 or len(gateway) != 4:
            continue
        metric = _u32(attrs.get(RTA_PRIORITY))
        if best is None or metric < best[0]:
            best = (metric, socket.inet_ntoa(gateway), _u32(attrs.get(RTA_OIF)))
    if best is None:
        return None
    _metric, gateway_ip, oif = best
    request = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    for payload, offset in await rtnl_dump(RTM_GETADDR, request):
        if len(payload) < offset + IFADDRMSG.size:
            continue
        _family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(payload, offset)
        local = attrs_of(payload, offset + IFADDRMSG.size).get(IFA_ADDRESS, b"")
        if index != oif or len(local) != 4:
            continue
        local_ip = socket.inet_ntoa(local)
        network = ipaddress.IPv4Network(f"{local_ip}/{prefixlen}", strict=False)
        if ipaddress.IPv4Address(gateway_ip) in network:
            return Gateway(gateway_ip, local_ip, network)
    return None


RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 4, 5, 6, 15
IFA_ADDRESS = 1


def _u32(raw: bytes | None) -> int:
    return int(struct.unpack("=I", raw)[0]) if raw is not None and len(raw) == 4 else 0


def ssdp_location(gateway: Gateway, headers: Any) -> str | None:
    """The LOCATION of an SSDP answer when it and its sender are on the local network.

    Anything else (an answer from elsewhere, or pointing elsewhere, which a hostile device or
    a DNS-rebinding page could send) is refused with a log line: None.
    """
    sender = str(headers.get("_host", ""))
    location = str(headers.get("location", ""))
    try:
        parts = urlsplit(location)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if (
        parts is None
        or parts.scheme != "http"
        or not gateway.is_local(sender)
        or not gateway.is_local(host)
    ):
        log.warning(
            "SSDP answer refused: from %r, LOCATION %r, outside the local network %s",
            sender[:60],
            location[:200],
            gateway.network,
        )
        return None
    return location


@dataclass(frozen=True, slots=True)
class Offer:
    """One protocol's probe answer: does the gateway speak it, and (NAT-PMP's answer carries
    it) its external address. ``refused`` names the result code of a gateway that answered no.
    """

    protocol: Protocol
    offered: bool
    external_ip: str = ""
    refused: str = ""


class _SsdpAnswers(asyncio.DatagramProtocol):
    def __init__(self, on_answer: Callable[[bytes, str], None]) -> None:
        self.on_answer = on_answer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_answer(data, str(addr[0]))


class _Answers(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=16)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable: nothing listens on 5351, no need to wait."""
        if isinstance(exc, OSError):
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(exc)


async def udp_exchange(
    gateway: Gateway, request: bytes, parse: Callable[[bytes], T], *, timeout: float
) -> T:
    """Send ``request`` to the gateway's port 5351 until a parsable answer comes (RFC 6886
    retransmission); malformed answers are logged and ignored. TimeoutError when none."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Answers, local_addr=(gateway.local_ip, 0), remote_addr=(gateway.ip, pcp.PORT)
    )
    try:
        async with asyncio.timeout(timeout):
            wait = FIRST_RETRANSMIT
            while True:
                transport.sendto(request)
                try:
                    async with asyncio.timeout(wait):
                        while True:
                            data = await proto.queue.get()
                            if isinstance(data, OSError):
                                raise data
                            try:
                                return parse(data)
                            except PortMapParseError as exc:
                                log.warning(
                                    "port mapping answer refused from %s: %s", gateway.ip, exc
                                )
                except TimeoutError:
                    wait *= 2
    finally:
        transport.close()


class PortMapClient:
    """One interface's requests to its gateway, in the three protocols."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._nonce = pcp.new_nonce()  # one per mapping (renewals and delete reuse it)
        self._igd: Any = None  # async_upnp_client UpnpDevice, once found
        self._igd_location = ""

    # --- probe --------------------------------------------------------------------------

    async def probe(self, protocols: tuple[Protocol, ...]) -> Protocol | None:
        """Ask in parallel; the first protocol that answers wins, None after PROBE_TIMEOUT."""
        probes = {asyncio.ensure_future(self._probe_one(p)): p for p in protocols}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                pending = set(probes)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        if (
                            not task.cancelled()
                            and task.exception() is None
                            and task.result().offered
                        ):
                            return probes[task]
        except TimeoutError:
            pass
        finally:
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)
        return None

    async def survey(self, protocols: tuple[Protocol, ...] = ALL_PROTOCOLS) -> list[Offer]:
        """Every protocol's answer, not just the first (netcheck): the probe's read-only
        questions, in parallel; one still silent after PROBE_TIMEOUT is not offered."""
        tasks = [asyncio.ensure_future(self._probe_one(p)) for p in protocols]
        _done, pending = await asyncio.wait(tasks, timeout=PROBE_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [
            task.result()
            if task.done() and not task.cancelled() and task.exception() is None
            else Offer(protocol, False)
            for protocol, task in zip(protocols, tasks, strict=True)
        ]

    async def _probe_one(self, protocol: Protocol) -> Offer:
        """Ask without mapping anything: PCP ANNOUNCE, NAT-PMP's external-address request,
        an SSDP search for an internet gateway device."""
        try:
            if protocol is Protocol.PCP:
                answer = await udp_exchange(
                    self.gateway,
                    pcp.announce_request(self.gateway.local_ip),
                    lambda d: pcp.parse_response(d, opcode=pcp.OP_ANNOUNCE),
                    timeout=PROBE_TIMEOUT,
                )
                ok = answer.result == pcp.Result.SUCCESS
                return Offer(protocol, ok, refused="" if ok else _name(pcp.Result, answer.result))
            if protocol is Protocol.NATPMP:
                reply = await udp_exchange(
                    self.gateway,
                    natpmp.external_address_request(),
                    natpmp.parse_external_address_response,
                    timeout=PROBE_TIMEOUT,
                )
                if reply.result != natpmp.Result.SUCCESS:
                    return Offer(protocol, False, refused=_name(natpmp.Result, reply.result))
                return Offer(protocol, True, external_ip=reply.external_ip)
            return Offer(protocol, await self._find_igd())
        except (OSError, TimeoutError):
            return Offer(protocol, False)

    async def _find_igd(self) -> bool:
        """An SSDP search on the gateway's network (sent twice, against loss); True once a
        local device answers with a local LOCATION (its description is read when mapping)."""
        loop = asyncio.get_running_loop()
        found: asyncio.Future[str] = loop.create_future()

        def on_answer(data: bytes, sender: str) -> None:
            try:
                headers: dict[str, str] = ssdp.parse_response(data)
            except PortMapParseError as exc:
                log.warning("SSDP answer refused: from %s, %s", sender, exc)
                return
            headers["_host"] = sender
            location = ssdp_location(self.gateway, headers)
            if location and not found.done():
                found.set_result(location)

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.gateway.local_ip)
            )
            sock.bind((self.gateway.local_ip, 0))
        except OSError:
            sock.close()
            raise
        transport, _proto = await loop.create_datagram_endpoint(
            lambda: _SsdpAnswers(on_answer), sock=sock
        )
        try:
            request = ssdp.search_request(IGD_SEARCH_TARGET)
            transport.sendto(request, ssdp.MULTICAST)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_RETRANSMIT):
                    location = await asyncio.shield(found)
            if not found.done():
                transport.sendto(request, ssdp.MULTICAST)
            location = await found
        finally:
            transport.close()
        if location != self._igd_location:
            self._igd, self._igd_location = None, location
        return True

    # --- map and unmap ------------------------------------------------------------------

    async def map(self, action: Map) -> tuple[str, int, int]:
        """(external ip, external port, granted lifetime); PortMapError when refused."""
        async with asyncio.timeout(REQUEST_TIMEOUT):
            if action.protocol is Protocol.PCP:
                return await self._pcp_map(
                    action.internal_port, action.lifetime, action.external_port
                )
            if action.protocol is Protocol.NATPMP:
                return await self._natpmp_map(
                    action.internal_port, action.lifetime, action.external_port
                )
            return await self._upnp_map(action.internal_port, action.lifetime, action.external_port)

    async def unmap(self, action: Unmap) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            if action.protocol is Protocol.PCP:
                await self._pcp_map(action.internal_port, 0, action.external_port)
            elif action.protocol is Protocol.NATPMP:
                reply = await udp_exchange(
                    self.gateway,
                    natpmp.delete_request(action.internal_port),
                    natpmp.parse_map_response,
                    timeout=REQUEST_TIMEOUT,
                )
                if reply.result != natpmp.Result.SUCCESS:
                    raise PortMapError(
                        f"natpmp delete refused ({_name(natpmp.Result, reply.result)})"
                    )
            else:
                await self._igd_call(
                    "DeletePortMapping",
                    NewRemoteHost="",
                    NewExternalPort=action.external_port,
                    NewProtocol="UDP",
                )
        self._nonce = pcp.new_nonce()

    async def _pcp_map(self, port: int, lifetime: int, suggested: int) -> tuple[str, int, int]:
        nonce = self._nonce
        answer = await udp_exchange(
            self.gateway,
            pcp.map_request(
                nonce=nonce,
                client_ip=self.gateway.local_ip,
                internal_port=port,
                lifetime=lifetime,
                external_port=suggested,
            ),
            lambda d: pcp.parse_response(d, opcode=pcp.OP_MAP, nonce=nonce),
            timeout=REQUEST_TIMEOUT,
        )
        if answer.result != pcp.Result.SUCCESS:
            raise PortMapError(f"pcp refused ({_name(pcp.Result, answer.result)})")
        if lifetime and answer.internal_port != port:
            raise PortMapError(f"pcp mapped port {answer.internal_port}, not {port}")
        return answer.external_ip, answer.external_port, answer.lifetime

    async def _natpmp_map(self, port: int, lifetime: int, suggested: int) -> tuple[str, int, int]:
        address = await udp_exchange(
            self.gateway,
            natpmp.external_address_request(),
            natpmp.parse_external_address_response,
            timeout=REQUEST_TIMEOUT,
        )
        if address.result != natpmp.Result.SUCCESS:
            raise PortMapError(f"natpmp refused ({_name(natpmp.Result, address.result)})")
        reply = await udp_exchange(
            self.gateway,
            natpmp.map_request(port, suggested, lifetime),
            natpmp.parse_map_response,
            timeout=REQUEST_TIMEOUT,
        )
        if reply.result != natpmp.Result.SUCCESS:
            raise PortMapError(f"natpmp refused ({_name(natpmp.Result, reply.result)})")
        if reply.internal_port != port:
            raise PortMapError(f"natpmp mapped port {reply.internal_port}, not {port}")
        return address.external_ip, reply.external_port, reply.lifetime

    async def _igd_call(self, action: str, **args: Any) -> dict[str, Any]:
        """Call a WAN(IP|PPP)Connection action of the gateway found by the probe.

        The remote host is passed empty (any peer): miniupnpd and others treat a renewal with
        a different spelling ("0.0.0.0") as a conflicting mapping.
        """
        from async_upnp_client.exceptions import UpnpError

        try:
            if self._igd is None:
                if not self._igd_location:
                    raise PortMapError("upnp: no internet gateway device found")
                from async_upnp_client.aiohttp import AiohttpRequester
                from async_upnp_client.client_factory import UpnpFactory

                factory = UpnpFactory(
                    AiohttpRequester(timeout=int(REQUEST_TIMEOUT)), non_strict=True
                )
                self._igd = await factory.async_create_device(self._igd_location)
            for service in self._igd.all_services:
                if "Connection:" in service.service_type and service.has_action(action):
                    result: dict[str, Any] = await service.action(action).async_call(**args)
                    return result
            raise PortMapError(f"upnp: the gateway has no {action}")
        except UpnpError as exc:
            raise PortMapError(f"upnp {action} refused ({str(exc)[:200]})") from exc
        except (OSError, ValueError) as exc:  # aiohttp and XML errors
            self._igd = None
            raise PortMapParseError(f"upnp {action}: {str(exc)[:200]}") from exc

    async def _upnp_map(self, port: int, lifetime: int, suggested: int) -> tuple[str, int, int]:
        answer = await self._igd_call("GetExternalIPAddress")
        external_ip = str(answer.get("NewExternalIPAddress") or "")
        if not _is_ipv4(external_ip):
            raise PortMapParseError(f"upnp: external address {external_ip[:60]!r}")
        await self._igd_call(
            "AddPortMapping",
            NewRemoteHost="",
            NewExternalPort=suggested,
            NewProtocol="UDP",
            NewInternalPort=port,
            NewInternalClient=self.gateway.local_ip,
            NewEnabled=True,
            NewPortMappingDescription=DESCRIPTION,
            NewLeaseDuration=lifetime,
        )
        return external_ip, suggested, lifetime


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _name(enum_type: Any, value: int) -> str:
    try:
        return str(enum_type(value).name)
    except ValueError:
        return f"result {value}"


class PortMapper:
    """Runs one interface's :class:`PortMapMachine` on the loop.

    ``on_change(status)`` is called whenever the mapping or the reason for none changes.
    """

    def __init__(
        self,
        ifname: str,
        *,
        mode: str,
        lifetime: int,
        on_change: Callable[[Status], None],
        find: Callable[[], Any] = find_gateway,
    ) -> None:
        self.ifname = ifname
        self.on_change = on_change
        self._find = find
        loop = asyncio.get_running_loop()
        self.machine = PortMapMachine(mode=mode, lifetime=lifetime, now=loop.time())
        self._client: PortMapClient | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None
        self._last = self.machine.status

    @property
    def status(self) -> Status:
        return self.machine.status

    def expires_unix(self) -> float:
        """The mapping's expiry in Unix seconds (0 when none)."""
        m = self.machine.mapping
        if m is None:
            return 0.0
        return time.time() + (m.expires - asyncio.get_running_loop().time())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"portmap-{self.ifname}")

    def set_port(self, port: int | None) -> None:
        self.machine.set_port(port, asyncio.get_running_loop().time())
        self._kick()

    def network_changed(self, why: str) -> None:
        """Addresses or routes changed: map again if the gateway (or our address) moved."""
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._check_gateway(why))

    def path_broken(self, why: str, *, carried: bool) -> float | None:
        """Health says a path through the published mapping failed; the machine decides
        whether to map again or to judge the router's mapping not forwarding. Returns the
        delay after which a report that came too early would count."""
        before = self.machine.mapping
        now = asyncio.get_running_loop().time()
        counts_from = self.machine.path_failed(why, now, carried=carried)
        if self.machine.status.phase is Phase.DISTRUSTED and before is not None:
            log.warning(
                "port mapping not forwarding iface=%s protocol=%s external=%s "
                "reason=%s (%s); deleted at the router, publishing STUN's endpoint",
                self.ifname,
                before.protocol.value,
                before.endpoint,
                self.machine.status.reason,
                why,
            )
        self._kick()
        return None if counts_from is None else max(0.0, counts_from - now)

    def peer_moved(self, why: str) -> None:
        """A peer published a new endpoint: a "not forwarding" verdict may have been its absence."""
        was = self.machine.status.phase
        self.machine.peer_moved(why)
        if was is Phase.DISTRUSTED and self.machine.status.phase is not Phase.DISTRUSTED:
            log.info("port mapping: asking the router again iface=%s (%s)", self.ifname, why)
        self._kick()

    async def _check_gateway(self, why: str) -> None:
        try:
            gateway = await self._find()
        except OSError as exc:
            log.warning("port mapping: reading routes failed iface=%s %s", self.ifname, exc)
            return
        current = self._client.gateway if self._client else None
        if gateway == current and self.machine.mapping is not None:
            return
        self._client = PortMapClient(gateway) if gateway is not None else None
        self.machine.network_changed(
            f"{why}; gateway {gateway.ip if gateway else 'none'}",
            asyncio.get_running_loop().time(),
            gateway_moved=gateway != current,
        )
        self._kick()

    async def stop(self) -> None:
        """Delete the mapping (bounded), then end."""
        if self._check is not None:
            self._check.cancel()
        self.machine.stop(asyncio.get_running_loop().time())
        self._kick()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, REQUEST_TIMEOUT + 1)
            self._task = None

    def _kick(self) -> None:
        self._wake.set()
        self._report()

    def _report(self) -> None:
        status = self.machine.status
        if status != self._last:
            self._last = status
            self.on_change(status)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while (action := self.machine.next_action()) is not None:
                await self._perform(action)
                self._report()
            self.machine.handle_timer(loop.time())
            if self.machine.next_action_pending():
                continue
            if self.machine.status.phase is Phase.STOPPED:
                return
            timer = self.machine.get_timer()
            self._wake.clear()
            delay = None if timer is None else max(0.0, timer - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._report()

    async def _gateway_client(self) -> PortMapClient | None:
        if self._client is None:
            gateway = await self._find()
            if gateway is not None:
                self._client = PortMapClient(gateway)
        return self._client

    async def _perform(self, action: Probe | Map | Unmap) -> None:
        now = asyncio.get_running_loop().time
        client = await self._gateway_client()
        if isinstance(action, Probe):
            found = await client.probe(action.protocols) if client else None
            if found:
                log.info(
                    "port mapping: %s answers on %s",
                    found.value,
                    client.gateway.ip if client else "",
                )
            self.machine.probe_done(action.seq, found, now())
        elif isinstance(action, Map):
            if client is None:
                self.machine.failed(action.seq, "no default gateway", now())
                return
            try:
                ip, port, lifetime = await client.map(action)
            except (PortMapError, OSError, TimeoutError) as exc:
                reason = str(exc) or f"{action.protocol.value}: no answer"
                log.warning("port mapping failed iface=%s %s", self.ifname, reason)
                self.machine.failed(action.seq, reason, now())
                return
            log.info(
                "port mapped iface=%s protocol=%s external=%s:%d lifetime=%d",
                self.ifname,
                action.protocol.value,
                ip,
                port,
                lifetime,
            )
            self.machine.mapped(action.seq, ip, port, lifetime, now())
        elif client is not None:
            try:
                await client.unmap(action)
                log.info(
                    "port mapping deleted iface=%s protocol=%s", self.ifname, action.protocol.value
                )
            except (PortMapError, OSError, TimeoutError) as exc:
                log.warning("port mapping delete failed iface=%s %s", self.ifname, exc or "timeout")
