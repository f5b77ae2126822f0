"""STUN discovery: a sans-IO codec, a transaction client, and a raw-socket transport.

The engine discovers through :mod:`stunmeshd.discovery` (a raw socket from WireGuard's port,
per family); the pieces are public so tests and tools can use them apart.
"""

from stunmeshd.stun.client import (
    BindingResult,
    ClientStats,
    DatagramTransport,
    StunClient,
    StunTransactionError,
    format_address,
    parse_server,
    resolve_servers,
)
from stunmeshd.stun.codec import BindingResponse, StunParseError
from stunmeshd.stun.rawsock import RawStunTransport

__all__ = [
    "BindingResponse",
    "BindingResult",
    "ClientStats",
    "DatagramTransport",
    "RawStunTransport",
    "StunClient",
    "StunParseError",
    "StunTransactionError",
    "format_address",
    "parse_server",
    "resolve_servers",
]
