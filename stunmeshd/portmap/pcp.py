"""PCP messages (RFC 6887), sans-IO: ANNOUNCE (the probe) and MAP for one UDP port.

Addresses travel as 128-bit fields; IPv4 ones as IPv4-mapped IPv6 (``::ffff:a.b.c.d``). A MAP
answer must echo our nonce, protocol and internal port (RFC 6887 §11.4) or it is not ours.
Every malformed or foreign datagram raises :class:`~stunmeshd.errors.PortMapParseError`; a
well-formed answer with a non-zero result code is returned, so the caller can say why.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import struct
from dataclasses import dataclass

from stunmeshd.errors import PortMapParseError

PORT = 5351
VERSION = 2
OP_ANNOUNCE = 0
OP_MAP = 1
RESPONSE_BIT = 0x80
PROTO_UDP = 17
NONCE_LENGTH = 12
MAX_MESSAGE = 1100  # RFC 6887 §7

_REQUEST_HEADER = struct.Struct("!BBHI16s")  # version, R|opcode, reserved, lifetime, client ip
_RESPONSE_HEADER = struct.Struct("!BBBBII12s")  # version, R|op, reserved, result, lifetime, epoch
_MAP_BODY = struct.Struct("!12sB3sHH16s")  # nonce, protocol, reserved, internal, external, ip
_OPTION_HEADER = struct.Struct("!BBH")


class Result(enum.IntEnum):
    """Result codes of RFC 6887 §7.4."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


@dataclass(frozen=True, slots=True)
class Response:
    """A PCP answer. For MAP successes the mapping fields are set, else they are empty."""

    opcode: int
    result: int
    lifetime: int  # granted lifetime, or (errors) how long to wait before retrying
    epoch: int
    nonce: bytes = b""
    internal_port: int = 0
    external_port: int = 0
    external_ip: str = ""


def new_nonce() -> bytes:
    return os.urandom(NONCE_LENGTH)


def _address_field(ip: str) -> bytes:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed).packed
    return addr.packed


def _address_text(raw: bytes) -> str:
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)


def announce_request(client_ip: str) -> bytes:
    """ANNOUNCE (opcode 0, lifetime 0): the cheapest question a PCP server must answer."""
    return _REQUEST_HEADER.pack(VERSION, OP_ANNOUNCE, 0, 0, _address_field(client_ip))


def map_request(
    *,
    nonce: bytes,
    client_ip: str,
    internal_port: int,
    lifetime: int,
    external_port: int = 0,
    external_ip: str = "0.0.0.0",
) -> bytes:
    """MAP UDP ``internal_port`` (lifetime 0 deletes; the same nonce must be used)."""
    if len(nonce) != NONCE_LENGTH:
        raise ValueError("a PCP nonce is 12 bytes")
    if not 1 <= internal_port <= 0xFFFF or not 0 <= external_port <= 0xFFFF:
        raise ValueError("port out of range")
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError(f"lifetime out of range: {lifetime}")
    header = _REQUEST_HEADER.pack(VERSION, OP_MAP, 0, lifetime, _address_field(client_ip))
    body = _MAP_BODY.pack(
        nonce,
        PROTO_UDP,
        b"\0\0\0",
        internal_port,
        external_port,
        _address_field(external_ip),
    )
    return header + body


def _check_options(data: bytes, offset: int) -> None:
    """Options are framed (code, reserved, length, data padded to 4); we use none."""
    while offset < len(data):
        if offset + _OPTION_HEADER.size > len(data):
            raise PortMapParseError("PCP option header truncated")
        _code, _reserved, length = _OPTION_HEADER.unpack_from(data, offset)
        offset += _OPTION_HEADER.size + (length + 3) // 4 * 4
        if offset > len(data):
            raise PortMapParseError("PCP option runs past the end")


def parse_response(data: bytes, *, opcode: int, nonce: bytes = b"") -> Response:
    """Parse an answer to a request with ``opcode`` (and, for MAP, ``nonce``)."""
    if len(data) < _RESPONSE_HEADER.size:
        raise PortMapParseError(f"PCP answer too short ({len(data)} bytes)")
    if len(data) > MAX_MESSAGE or len(data) % 4:
        raise PortMapParseError(f"PCP answer of {len(data)} bytes (not a multiple of 4 <= 1100)")
    version, r_op, _reserved, result, lifetime, epoch, _zero = _RESPONSE_HEADER.unpack_from(data)
    if version != VERSION:
        raise PortMapParseError(f"not a PCP answer (version {version})")
    if not r_op & RESPONSE_BIT:
        raise PortMapParseError("a PCP request, not an answer")
    if r_op & 0x7F != opcode:
        raise PortMapParseError(f"PCP answer to opcode {r_op & 0x7F}, not {opcode}")
    if opcode != OP_MAP:
        _check_options(data, _RESPONSE_HEADER.size)
        return Response(opcode, result, lifetime, epoch)
    if len(data) < _RESPONSE_HEADER.size + _MAP_BODY.size:
        if result != Result.SUCCESS:  # servers may leave the MAP body off an error
            return Response(opcode, result, lifetime, epoch)
        raise PortMapParseError("PCP MAP answer without its MAP body")
    got_nonce, proto, _r, internal, external, raw_ip = _MAP_BODY.unpack_from(
        data, _RESPONSE_HEADER.size
    )
    _check_options(data, _RESPONSE_HEADER.size + _MAP_BODY.size)
    if got_nonce != nonce:
        raise PortMapParseError("PCP MAP answer with a foreign nonce")
    if proto != PROTO_UDP:
        raise PortMapParseError(f"PCP MAP answer for protocol {proto}, not UDP")
    if result != Result.SUCCESS:
        return Response(opcode, result, lifetime, epoch, got_nonce, internal)
    if internal == 0 or (external == 0 and lifetime != 0):
        raise PortMapParseError("PCP MAP answer with port 0")
    return Response(
        opcode, result, lifetime, epoch, got_nonce, internal, external, _address_text(raw_ip)
    )
