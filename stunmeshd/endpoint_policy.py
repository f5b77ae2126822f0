"""Which addresses can be a peer's public endpoint: one rule for STUN answers and records alike.

An endpoint we publish comes from a STUN answer; an endpoint we apply to WireGuard comes from a
peer's record. Both pass the same test, so nothing a STUN server or a store hands us can point
WireGuard at this host itself, at a whole link, or at nowhere.

Refused (no peer can ever be reached there from another host):
  unspecified / "this network" (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1), link-local
  (169.254.0.0/16, fe80::/10: meaningless without the sender's link), multicast (224.0.0.0/4,
  ff00::/8), broadcast (255.255.255.255), class E (240.0.0.0/4), IPv4-mapped IPv6
  (::ffff:0:0/96: that is an IPv4 endpoint, and belongs in the record's ipv4 field), the rest of
  IPv6's reserved space (outside 2000::/3 and fc00::/7), and port 0.

Accepted on purpose although not globally routable: private (10/8, 172.16/12, 192.168/16,
fc00::/7), carrier-grade NAT (100.64.0.0/10), benchmarking (198.18.0.0/15) and documentation
ranges. Behind a carrier NAT, or with a STUN server inside a private network or a VPN, the
address a peer can reach is one of these; refusing them would break working set-ups, and they
cannot point WireGuard at this host itself. (The lab runs on the documentation and
benchmarking ranges.)
"""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_V4_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def refusal(address: Address, port: int) -> str | None:
    """Why ``address:port`` can never be a peer's public endpoint, or None when it can be."""
    reason = _address_refusal(address)
    if reason is not None:
        return f"{address} is {reason}"
    if not 1 <= port <= 65535:
        return f"port {port} is outside 1..65535"
    return None


def _address_refusal(address: Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address (an IPv4 endpoint in disguise)"
    if address.is_unspecified or address in _V4_THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback (this host)"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address == _V4_BROADCAST:
        return "the broadcast address"
    if address.is_reserved:
        return "reserved (class E)" if address.version == 4 else "reserved address space"
    return None


__all__ = ["refusal"]
