"""``stunmeshctl netcheck``: what this network lets stunmeshd do, measured now, no daemon needed.

Standalone on purpose: the question comes up before anything is configured, or when the daemon
is the suspect. Per STUN server and address family: round trip, mapped address; then the NAT's
mapping and filtering behaviour (RFC 5780 tests), whether the mapping is the same towards every
server, whether IPv6 works, and a one-line verdict. Probes leave from an ordinary UDP socket
(any user may run it); ``--port`` probes from a given port through a raw socket instead, as the
daemon does from WireGuard's (root). The mapping behaviour is the NAT's, whatever the port —
except a NAT with a rule for one port (the lab's port-changing NAT): ``--port`` shows that.

With IPv4, the default gateway is asked which port-mapping protocols it offers (PCP, NAT-PMP,
UPnP IGD: portmap's parallel probe, read-only questions, no mapping is made), since stunmeshd's
port mapping gets through a NAT that STUN alone cannot.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stunmeshd.discovery import classify_mapping
from stunmeshd.endpoints import format_endpoint
from stunmeshd.errors import StunError
from stunmeshd.model import NatMapping
from stunmeshd.stun.client import BindingResult, StunClient, resolve_servers
from stunmeshd.stun.codec import CHANGE_IP, CHANGE_PORT
from stunmeshd.stun.udp import UdpStunTransport, local_address

FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
PROBE_RTO = 0.25  # s; three tries: a silent server costs about 2 s, not the RFC's 39.5 s
PROBE_TRANSMISSIONS = 3
MAPPING_NAMES = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP IGD"}


@dataclass
class Probe:
    """One STUN server, one family."""

    server: str  # as configured
    family: str
    address: str = ""  # the resolved ip:port asked
    rtt_ms: float | None = None
    mapped: str = ""
    other_address: str = ""  # the server's RFC 5780 alternate, if it has one
    error: str = ""


@dataclass
class FamilyReport:
    family: str
    source_port: int | None = None  # the local port the probes left from
    reachable: bool = False
    public: str = ""  # the mapped address (the first server's)
    local: str = ""  # the address this host sends from
    behind_nat: bool | None = None
    mapping: str = NatMapping.UNKNOWN.value
    filtering: str = "unknown"
    stable: bool | None = None  # the same mapping towards every server that answered
    note: str = ""


@dataclass
class PortMappingReport:
    """What the default IPv4 gateway answered to portmap's probe (nothing mapped)."""

    gateway: str = ""  # the gateway asked; empty when none was
    protocols: dict[str, bool] = field(default_factory=dict)  # "pcp", "natpmp", "upnp"
    external_ip: str = ""  # the router's external address, when an answer carries it
    note: str = "not probed (only IPv6 was probed)"

    @property
    def offered(self) -> list[str]:
        return [MAPPING_NAMES[p] for p, yes in self.protocols.items() if yes]


@dataclass
class Report:
    mode: str
    source_port: int | None
    servers_from: str
    probes: list[Probe] = field(default_factory=list)
    families: dict[str, FamilyReport] = field(default_factory=dict)
    port_mapping: PortMappingReport = field(default_factory=PortMappingReport)
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def choose_servers(
    given: Sequence[str], bus: str, config: str | None
) -> tuple[list[str], str]:
    """The STUN servers to probe and where they came from: --server, else the running
    daemon's (asked over the bus, briefly), else the configuration file, else the default."""
    if given:
        return list(given), "--server"
    if config is None:
        try:
            from stunmeshd.ctl.client import Client

            client = await asyncio.wait_for(Client.connect(bus, interactive=False), 2)
            try:
                manager = await asyncio.wait_for(client.manager(), 2)
            finally:
                client.close()
            if manager.get("StunServers"):
                return list(manager["StunServers"]), "the running daemon"
        except Exception:  # no bus, no daemon: fine, this mode needs neither
            pass
    from stunmeshd.config import DEFAULT_STUN_SERVER, load_config
    from stunmeshd.errors import ConfigError

    try:
        loaded = load_config(Path(config) if config else None)
    except ConfigError as exc:
        if config:
            raise
        return [DEFAULT_STUN_SERVER], f"the default (no configuration: {exc})"
    return list(loaded.stun_servers), f"{loaded.source}"


async def run_netcheck(
    servers: Sequence[str],
    *,
    servers_from: str,
    families: Sequence[str] = ("ipv4", "ipv6"),
    port: int | None = None,
) -> Report:
    report = Report(
        mode="raw socket" if port else "udp socket", source_port=port, servers_from=servers_from
    )
    mapping = asyncio.ensure_future(check_port_mapping()) if "ipv4" in families else None
    results = await asyncio.gather(*(check_family(servers, f, port) for f in families))
    if mapping is not None:
        report.port_mapping = await mapping
    for family, (probes, family_report, used_port) in zip(families, results, strict=True):
        report.probes += probes
        report.families[family] = family_report
        report.source_port = report.source_port or used_port
    report.verdict = verdict(report)
    return report


async def check_family(
    servers: Sequence[str], family_name: str, port: int | None
) -> tuple[list[Probe], FamilyReport, int | None]:
    family = FAMILIES[family_name]
    fam = FamilyReport(family_name)
    probes: list[Probe] = []
    targets: list[tuple[Probe, tuple[str, int]]] = []
    for spec in servers:
        if _other_family_literal(spec, family):
            continue  # an IPv4 server is no IPv6 server: not an error
        probe = Probe(spec, family_name)
        probes.append(probe)
        try:
            (address,) = (await resolve_servers([spec], family))[:1]
        except (StunError, ValueError) as exc:
            probe.error = str(exc)
            continue
        probe.address = format_endpoint(*address)
        targets.append((probe, address))
    if not targets:
        fam.note = f"no {family_name} STUN server" + (" resolved" if probes else " configured")
        return probes, fam, None
    try:
        transport = _transport(family, port)
        async with transport:
            used_port = fam.source_port = transport.port
            client = StunClient(
                transport,
                rto=PROBE_RTO,
                max_transmissions=PROBE_TRANSMISSIONS,
                final_wait=4 * PROBE_RTO,
                stagger=0,
            )
            results = await asyncio.gather(
                *(client.binding(addr) for _, addr in targets), return_exceptions=True
            )
            answered: list[BindingResult] = []
            for (probe, _), result in zip(targets, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, (StunError, OSError)):
                        raise result
                    probe.error = _reason(result)
                    continue
                probe.rtt_ms = round(result.rtt * 1000, 2)
                probe.mapped = format_endpoint(*result.mapped)
                if result.other_address:
                    probe.other_address = format_endpoint(*result.other_address)
                answered.append(result)
            if not answered:
                fam.note = "no STUN server answered"
                return probes, fam, used_port
            first = answered[0]
            fam.reachable = True
            fam.public = format_endpoint(*first.mapped)
            fam.local = local_address(family, first.server) or ""
            if fam.local:
                fam.behind_nat = ipaddress.ip_address(fam.local) != ipaddress.ip_address(
                    first.mapped[0]
                )
            fam.stable = len({r.mapped for r in answered}) == 1 if len(answered) > 1 else None
            mapping = await classify_mapping(client, first, [a for _, a in targets])
            fam.mapping = mapping.value
            fam.filtering = await classify_filtering(client, first)
    except (OSError, StunError) as exc:  # e.g. --port without CAP_NET_RAW
        fam.note = f"cannot probe: {getattr(exc, 'strerror', None) or exc}"
        for probe, _ in targets:
            probe.error = probe.error or fam.note
        return probes, fam, None
    if fam.mapping == NatMapping.UNKNOWN.value:
        fam.note = "mapping unknown: needs two STUN servers, or one with RFC 5780 OTHER-ADDRESS"
    return probes, fam, used_port


async def check_port_mapping() -> PortMappingReport:
    """Ask the default gateway, in parallel and within portmap's probe time, which mapping
    protocols it speaks; only read-only questions (portmap's probe), so no mapping is made."""
    from stunmeshd.portmap.client import PortMapClient, find_gateway

    result = PortMappingReport(note="")
    try:
        gateway = await find_gateway()
    except OSError as exc:
        result.note = f"not probed (cannot read the routes: {exc.strerror or exc})"
        return result
    if gateway is None:
        result.note = "not probed (no default IPv4 gateway)"
        return result
    result.gateway = gateway.ip
    offers = await PortMapClient(gateway).survey()
    result.protocols = {o.protocol.value: o.offered for o in offers}
    result.external_ip = next((o.external_ip for o in offers if o.external_ip), "")
    result.note = "; ".join(
        f"{MAPPING_NAMES[o.protocol.value]} answered {o.refused}" for o in offers if o.refused
    )
    return result


def _transport(family: int, port: int | None) -> Any:
    if port:
        from stunmeshd.stun.rawsock import RawStunTransport

        return RawStunTransport(family, port)
    return UdpStunTransport(family)


def _other_family_literal(spec: str, family: int) -> bool:
    host = spec.rsplit(":", 1)[0] if not spec.startswith("[") else spec[1:].split("]")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (address.version == 6) != (family == socket.AF_INET6)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    return str(text)


async def classify_filtering(client: StunClient, first: BindingResult) -> str:
    """RFC 5780 §4.4: may an answer from the server's other address (test II), or only from
    its other port (test III), come back through the NAT?"""
    if first.other_address is None:
        return "unknown"
    for change, answer in (
        (CHANGE_IP | CHANGE_PORT, "endpoint-independent"),
        (CHANGE_PORT, "address-dependent"),
    ):
        try:
            result = await client.binding(first.server, change=change)
        except StunError as exc:
            if "error response" in str(exc):
                return "unknown"  # the server refuses CHANGE-REQUEST
            continue
        origin = result.response_origin
        if origin is not None and origin == first.server:
            return "unknown"  # the server ignored the request and answered from the same place
        return answer
    return "address-and-port-dependent"


def verdict(report: Report) -> str:
    """One line a person can act on."""
    v4 = report.families.get("ipv4")
    v6 = report.families.get("ipv6")
    v6_ok = v6 is not None and v6.reachable
    v6_note = "; IPv6 works too" if v6_ok else ""
    offered = ", ".join(report.port_mapping.offered)
    if v4 is None or not v4.reachable:
        unprobed = [f.note for f in report.families.values() if f.note.startswith("cannot probe")]
        if unprobed and not v6_ok:
            return f"nothing was measured: {unprobed[0].removeprefix('cannot probe: ')}"
        if v6_ok:
            return "only IPv6 works: peers need IPv6 (set protocol: ipv6 or dualstack)"
        return (
            "no STUN server answered: stunmeshd cannot learn this host's endpoint "
            "(check the servers and that outgoing UDP is allowed)"
        )
    if v4.behind_nat is False:
        return (
            f"no NAT on IPv4 ({v4.public}): peers can connect directly if inbound UDP is "
            f"allowed{v6_note}"
        )
    if v4.mapping == NatMapping.ENDPOINT_INDEPENDENT.value:
        if offered and v4.filtering not in ("endpoint-independent", "address-dependent"):
            return (
                "direct connections will work, also with peers behind symmetric NATs, through "
                f"the router's port mapping ({offered}){v6_note}"
            )
        if v4.filtering in ("endpoint-independent", "address-dependent"):
            return (
                "direct connections will work, also with most peers behind symmetric NATs "
                f"(endpoint-independent mapping, {v4.filtering} filtering){v6_note}"
            )
        return (
            "direct connections will work with cone-NAT peers, not with peers behind symmetric "
            f"NATs (endpoint-independent mapping, {v4.filtering} filtering){v6_note}"
        )
    if v4.mapping in (
        NatMapping.ADDRESS_DEPENDENT.value,
        NatMapping.ADDRESS_AND_PORT_DEPENDENT.value,
    ):
        if offered:
            return (
                f"direct connections will work through the router's port mapping ({offered}), "
                f"although this NAT's mapping is {v4.mapping} (symmetric){v6_note}"
            )
        return (
            f"direct IPv4 connections will fail unless the peer is directly reachable: this NAT's "
            f"mapping is {v4.mapping} (symmetric), so the port STUN sees is not the one a peer "
            f"would reach{'; use IPv6 (it works here)' if v6_ok else ''}"
        )
    return (
        f"this host's endpoint is {v4.public}, NAT behaviour unknown: configure a second STUN "
        f"server or one with RFC 5780 support"
        f"{f'; the router offers port mapping ({offered})' if offered else ''}{v6_note}"
    )


def render(report: Report) -> str:
    mode = "raw socket, as the daemon" if report.mode == "raw socket" else "ordinary UDP socket"
    lines = [f"netcheck (standalone, {mode}; servers from {report.servers_from}):"]
    width = max((len(p.server) for p in report.probes), default=0)
    for probe in report.probes:
        if probe.rtt_ms is not None:
            result = f"{probe.rtt_ms:.1f} ms, mapped {probe.mapped}"
        else:
            result = f"failed: {probe.error or 'not probed'}"
        lines.append(f"  * STUN {probe.server:<{width}}  {probe.family}  {result}")
    for name, fam in report.families.items():
        label = "IPv4" if name == "ipv4" else "IPv6"
        if not fam.reachable:
            lines.append(f"  * {label}: no ({fam.note or 'no answer'})")
            continue
        nats: dict[bool | None, str] = {True: f"behind NAT, local {fam.local}", False: "no NAT"}
        nat = nats.get(fam.behind_nat, "NAT unknown")
        lines.append(f"  * {label}: yes, public {fam.public} ({nat}; from port {fam.source_port})")
        stabilities: dict[bool | None, str] = {
            True: "same towards every server",
            False: "DIFFERENT per server",
        }
        stable = stabilities.get(fam.stable, "one server answered")
        lines.append(f"      mapping {fam.mapping} ({stable}); filtering {fam.filtering}")
        if fam.note:
            lines.append(f"      {fam.note}")
    lines.append(f"  * port mapping: {render_port_mapping(report.port_mapping)}")
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)


def render_port_mapping(pm: PortMappingReport) -> str:
    if not pm.gateway:
        return pm.note
    offered = pm.offered
    others = [MAPPING_NAMES[p] for p, yes in pm.protocols.items() if not yes]
    parts = [f"{', '.join(offered)} offered" if offered else "none offered"]
    if offered and others:
        parts.append(f"not {', '.join(others)}")
    if pm.external_ip:
        parts.append(f"external address {pm.external_ip}")
    if pm.note:
        parts.append(pm.note)
    return f"gateway {pm.gateway}: " + "; ".join(parts)
