"""Endpoint strings, one form everywhere: ``203.0.113.7:51820`` and ``[2001:db8::7]:51820``.

IPv6 is written in RFC 5952 form (what ``ipaddress`` prints), in brackets — in records,
WireGuard, D-Bus and logs alike.
"""

from __future__ import annotations

import ipaddress


def format_endpoint(host: str, port: int) -> str:
    """Format an IP literal and port; raises ValueError for anything else."""
    addr = ipaddress.ip_address(host.strip("[]"))
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    if addr.version == 6:
        return f"[{addr.compressed}]:{port}"
    return f"{addr}:{port}"


def parse_endpoint(text: str) -> tuple[str, int, int]:
    """Split an endpoint into (ip, port, version 4|6); raises ValueError when malformed."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"malformed endpoint {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"malformed endpoint {text!r}")
    if not port_text.isdigit():
        raise ValueError(f"malformed port in endpoint {text!r}")
    port = int(port_text)
    addr = ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in endpoint {text!r}")
    return str(addr) if addr.version == 4 else addr.compressed, port, addr.version


def normalize_endpoint(text: str) -> str:
    """The canonical form of an endpoint string (RFC 5952 for IPv6)."""
    host, port, _ = parse_endpoint(text)
    return format_endpoint(host, port)
