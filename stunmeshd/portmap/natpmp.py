"""NAT-PMP messages (RFC 6886), sans-IO: build requests, parse the router's answers.

Only what a client needs: the external-address request and the UDP mapping request (a
lifetime of 0 deletes). Every malformed or unexpected datagram raises
:class:`~stunmeshd.errors.PortMapParseError`; a well-formed answer with a non-zero result code
is returned as it is, so the caller can say *why* the router refused.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from stunmeshd.errors import PortMapParseError

PORT = 5351
VERSION = 0
OP_EXTERNAL_ADDRESS = 0
OP_MAP_UDP = 1
RESPONSE_BIT = 128

_EXTERNAL_REQUEST = struct.Struct("!BB")
_MAP_REQUEST = struct.Struct("!BBHHHI")
_HEADER = struct.Struct("!BBHI")  # version, opcode, result, seconds since epoch
_EXTERNAL_RESPONSE = struct.Struct("!BBHI4s")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")


class Result(enum.IntEnum):
    """Result codes of RFC 6886 §3.5."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


@dataclass(frozen=True, slots=True)
class ExternalAddressResponse:
    result: int
    epoch: int
    external_ip: str


@dataclass(frozen=True, slots=True)
class MapResponse:
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


def external_address_request() -> bytes:
    """Opcode 0: 'what is your external address?' (also the probe: any router answers it)."""
    return _EXTERNAL_REQUEST.pack(VERSION, OP_EXTERNAL_ADDRESS)


def map_request(internal_port: int, external_port: int, lifetime: int) -> bytes:
    """Map UDP ``internal_port``; ``external_port`` is only a suggestion. Lifetime 0 deletes."""
    _check_port(internal_port, allow_zero=False)
    _check_port(external_port, allow_zero=True)
    if not 0 <= lifetime <= 0xFFFFFFFF:
        raise ValueError(f"lifetime out of range: {lifetime}")
    return _MAP_REQUEST.pack(VERSION, OP_MAP_UDP, 0, internal_port, external_port, lifetime)


def delete_request(internal_port: int) -> bytes:
    """RFC 6886 §3.4: lifetime 0 and suggested external port 0 remove the mapping."""
    return map_request(internal_port, 0, 0)


def _check_port(port: int, *, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")


def _header(data: bytes, opcode: int) -> tuple[int, int]:
    """Version and opcode checked; returns (result, epoch). Short error answers are allowed."""
    if len(data) < _HEADER.size:
        raise PortMapParseError(f"NAT-PMP answer too short ({len(data)} bytes)")
    version, op, result, epoch = _HEADER.unpack_from(data)
    if version != VERSION:
        raise PortMapParseError(f"not a NAT-PMP answer (version {version})")
    if op != RESPONSE_BIT | opcode:
        raise PortMapParseError(f"NAT-PMP answer to opcode {op & 0x7F}, not {opcode}")
    return result, epoch


def parse_external_address_response(data: bytes) -> ExternalAddressResponse:
    result, epoch = _header(data, OP_EXTERNAL_ADDRESS)
    if result != Result.SUCCESS:
        return ExternalAddressResponse(result, epoch, "")
    if len(data) != _EXTERNAL_RESPONSE.size:
        raise PortMapParseError(f"NAT-PMP address answer of {len(data)} bytes, not 12")
    *_, raw = _EXTERNAL_RESPONSE.unpack(data)
    return ExternalAddressResponse(result, epoch, str(ipaddress.IPv4Address(raw)))


def parse_map_response(data: bytes) -> MapResponse:
    result, epoch = _header(data, OP_MAP_UDP)
    if result != Result.SUCCESS:
        return MapResponse(result, epoch, 0, 0, 0)
    if len(data) != _MAP_RESPONSE.size:
        raise PortMapParseError(f"NAT-PMP mapping answer of {len(data)} bytes, not 16")
    _v, _op, _r, _e, internal, external, lifetime = _MAP_RESPONSE.unpack(data)
    if internal == 0:
        raise PortMapParseError("NAT-PMP mapping answer for internal port 0")
    if external == 0 and lifetime != 0:
        raise PortMapParseError("NAT-PMP mapping answer with external port 0")
    return MapResponse(result, epoch, internal, external, lifetime)
