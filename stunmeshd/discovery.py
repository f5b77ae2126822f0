"""Public endpoint discovery for one device: STUN from WireGuard's port, per address family,
plus a classification of the NAT's mapping behaviour (RFC 5780 tests I and II).

Why classify: behind an address- or port-dependent ("symmetric") mapping the port STUN reports
is not the one a peer's packets would reach, so a tunnel cannot form from STUN alone. Saying so
beats a tunnel that silently never comes up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stunmeshd.endpoints import format_endpoint
from stunmeshd.errors import StunError
from stunmeshd.model import NatMapping
from stunmeshd.stun.client import (
    DEFAULT_MAX_TRANSMISSIONS,
    DEFAULT_RTO,
    BindingResult,
    StunClient,
    resolve_servers,
)
from stunmeshd.stun.rawsock import RawStunTransport

log = logging.getLogger(__name__)

FAMILIES = {
    "ipv4": (socket.AF_INET,),
    "ipv6": (socket.AF_INET6,),
    "dualstack": (socket.AF_INET, socket.AF_INET6),
}
FAMILY_NAMES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
# the classification must not hold up publishing for long when a second server is silent
CLASSIFY_RTO = 0.2
CLASSIFY_TRANSMISSIONS = 3

SockFactory = Callable[[int, int, int], socket.socket]


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one discovery found: endpoints by family name ("ipv4"/"ipv6") and the mapping."""

    endpoints: dict[str, str] = field(default_factory=dict)
    nat_mapping: NatMapping = NatMapping.UNKNOWN
    errors: dict[str, str] = field(default_factory=dict)  # family name -> why it failed

    @property
    def ok(self) -> bool:
        return bool(self.endpoints)

    def error_text(self) -> str:
        return "; ".join(f"{fam}: {err}" for fam, err in self.errors.items())


@dataclass(frozen=True, slots=True)
class StunSettings:
    servers: tuple[str, ...]
    rto: float = DEFAULT_RTO
    max_transmissions: int = DEFAULT_MAX_TRANSMISSIONS
    final_wait: float | None = None  # None: the client's RFC 8489 default (Rm x RTO)
    stagger: float | None = None  # None: the client's default
    sock_factory: SockFactory | None = None  # tests create sockets inside a lab namespace


async def discover(
    settings: StunSettings, *, port: int, fwmark: int, protocol: str, classify: bool = True
) -> Discovery:
    """Discover the public endpoint(s) of WireGuard's ``port``.

    With ``dualstack`` either family may fail alone; the Discovery is not ``ok`` only when all
    requested families failed.
    """
    families = FAMILIES.get(protocol, (socket.AF_INET,))
    results = await asyncio.gather(
        *(
            discover_family(settings, port=port, family=family, fwmark=fwmark, classify=classify)
            for family in families
        ),
        return_exceptions=True,
    )
    endpoints: dict[str, str] = {}
    errors: dict[str, str] = {}
    mappings: list[NatMapping] = []
    for family, result in zip(families, results, strict=True):
        name = FAMILY_NAMES[family]
        if isinstance(result, BaseException):
            if not isinstance(result, (StunError, OSError)):
                raise result
            errors[name] = str(result) or type(result).__name__
            continue
        binding, mapping = result
        endpoints[name] = format_endpoint(*binding.mapped)
        mappings.append(mapping)
    return Discovery(endpoints=endpoints, nat_mapping=_combine(mappings), errors=errors)


def _combine(mappings: Sequence[NatMapping]) -> NatMapping:
    """The worst known mapping over the families (IPv4 NAT usually decides)."""
    known = [m for m in mappings if m is not NatMapping.UNKNOWN]
    for worst in (
        NatMapping.ADDRESS_AND_PORT_DEPENDENT,
        NatMapping.ADDRESS_DEPENDENT,
        NatMapping.ENDPOINT_INDEPENDENT,
    ):
        if worst in known:
            return worst
    return NatMapping.UNKNOWN


async def discover_family(
    settings: StunSettings,
    *,
    port: int,
    family: int = socket.AF_INET,
    fwmark: int = 0,
    classify: bool = False,
) -> tuple[BindingResult, NatMapping]:
    """The public mapping of UDP ``port`` (WireGuard's) for one family, and with ``classify``
    the NAT's mapping behaviour. Raises StunError (missing capability, no answer, ...).

    A raw socket is opened for this discovery only, so nothing listens between discoveries.
    """
    async with RawStunTransport(
        family, port, fwmark=fwmark, sock_factory=settings.sock_factory
    ) as transport:
        client = StunClient(
            transport,
            rto=settings.rto,
            max_transmissions=settings.max_transmissions,
            final_wait=settings.final_wait,
            stagger=settings.stagger,
            family=family,
        )
        first = await client.discover(settings.servers)
        mapping = NatMapping.UNKNOWN
        if classify:
            servers = await _resolved(settings.servers, family)
            mapping = await classify_mapping(
                StunClient(transport, rto=CLASSIFY_RTO, max_transmissions=CLASSIFY_TRANSMISSIONS),
                first,
                servers,
            )
        return first, mapping


async def _resolved(servers: Sequence[str], family: int) -> list[tuple[str, int]]:
    try:
        return await resolve_servers(servers, family)
    except StunError:
        return []


async def classify_mapping(
    client: StunClient, first: BindingResult, servers: Sequence[tuple[str, int]]
) -> NatMapping:
    """RFC 5780 mapping tests: same mapping towards another IP => endpoint-independent.

    Test II goes to a different server address (another configured server, else the
    OTHER-ADDRESS the first server advertised); when that mapping differs, test III goes to the
    first server's IP on its alternate port to tell address- from address-and-port-dependent.
    """
    alternate = next((s for s in servers if s[0] != first.server[0]), None)
    if alternate is None and first.other_address and first.other_address[0] != first.server[0]:
        alternate = first.other_address
    if alternate is None:
        return NatMapping.UNKNOWN
    try:
        second = await client.binding(alternate)
    except StunError as exc:
        log.debug("mapping test II got no answer server=%s err=%s", alternate, exc)
        return NatMapping.UNKNOWN
    if second.mapped == first.mapped:
        return NatMapping.ENDPOINT_INDEPENDENT
    if first.other_address is None or first.other_address[1] == first.server[1]:
        return NatMapping.ADDRESS_AND_PORT_DEPENDENT  # cannot tell which: assume the worse
    try:
        third = await client.binding((first.server[0], first.other_address[1]))
    except StunError:
        return NatMapping.ADDRESS_AND_PORT_DEPENDENT
    if third.mapped == first.mapped:
        return NatMapping.ADDRESS_DEPENDENT
    return NatMapping.ADDRESS_AND_PORT_DEPENDENT
