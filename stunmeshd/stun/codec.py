"""STUN messages (RFC 8489), sans-IO: build Binding requests, parse what comes back.

No sockets here, so every rule can be tested with plain bytes and the client and the raw
socket share one definition of "a valid answer".

Policy decisions (documented because servers differ):

* **Every malformed input raises** :class:`StunParseError` and nothing else. It subclasses
  both :class:`~stunmeshd.errors.StunError` (the daemon's "discovery failed" family) and
  :class:`ValueError` (what a codec caller naturally catches).
* **The magic cookie is required.** Our requests always carry it, and an RFC 3489 server
  echoes the whole 128-bit transaction id it got, cookie included (RFC 8489 §12) — so a genuine
  answer to us always has it. A datagram without it is not an answer to us; refusing it also
  keeps the test that tells STUN from WireGuard traffic on the shared port strict (the raw
  socket's BPF filter drops such datagrams anyway). RFC 3489 servers are still supported:
  their MAPPED-ADDRESS, CHANGED-ADDRESS and SOURCE-ADDRESS stand in for XOR-MAPPED-ADDRESS,
  OTHER-ADDRESS and RESPONSE-ORIGIN.
* **Structure vs meaning.** :func:`parse_message` checks framing only (header, lengths,
  padding, FINGERPRINT), so a caller can match the transaction id before judging content;
  :func:`decode_binding_response` then applies RFC 8489 §6.3: an unknown
  comprehension-required attribute (< 0x8000) makes a response unusable, unknown
  comprehension-optional ones (>= 0x8000) are skipped, known ones we do not use
  (MESSAGE-INTEGRITY, SOFTWARE, ...) are accepted and ignored.
"""

from __future__ import annotations

import binascii
import enum
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from stunmeshd.errors import StunError

MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_LENGTH = 20
TRANSACTION_ID_LENGTH = 12
FINGERPRINT_XOR = 0x5354554E

METHOD_BINDING = 0x001

_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")


class MessageClass(enum.IntEnum):
    """The two class bits of a STUN message type."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Attr(enum.IntEnum):
    """Attribute types this codec knows (RFC 3489, 5780, 8489)."""

    MAPPED_ADDRESS = 0x0001
    RESPONSE_ADDRESS = 0x0002  # RFC 3489
    CHANGE_REQUEST = 0x0003  # RFC 5780 (and 3489)
    SOURCE_ADDRESS = 0x0004  # RFC 3489: the old RESPONSE-ORIGIN
    CHANGED_ADDRESS = 0x0005  # RFC 3489: the old OTHER-ADDRESS
    USERNAME = 0x0006
    PASSWORD = 0x0007  # RFC 3489
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REFLECTED_FROM = 0x000B  # RFC 3489
    REALM = 0x0014
    NONCE = 0x0015
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    PADDING = 0x0026  # RFC 5780
    RESPONSE_PORT = 0x0027  # RFC 5780
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    RESPONSE_ORIGIN = 0x802B  # RFC 5780
    OTHER_ADDRESS = 0x802C  # RFC 5780


_KNOWN_ATTRIBUTES = frozenset(int(a) for a in Attr)
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02

Address = tuple[str, int]


class StunParseError(StunError, ValueError):
    """A datagram is not a well-formed STUN message, or not a usable Binding response."""


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A framed STUN message: header fields and raw attributes, in wire order.

    Attributes after MESSAGE-INTEGRITY (except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT) are
    dropped, as RFC 8489 §14.5 says to ignore them; FINGERPRINT itself is verified, not kept.
    """

    method: int
    cls: MessageClass
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...]
    fingerprint: bool  # a FINGERPRINT was present (and matched)

    def get(self, attr_type: int) -> bytes | None:
        """The first occurrence of an attribute (RFC 8489: later duplicates are ignored)."""
        for t, value in self.attributes:
            if t == attr_type:
                return value
        return None


@dataclass(frozen=True, slots=True)
class BindingResponse:
    """A Binding success or error response, decoded.

    ``mapped`` comes from XOR-MAPPED-ADDRESS when present (``mapped_xor`` True), else from
    MAPPED-ADDRESS (RFC 3489 servers). ``other_address`` falls back to CHANGED-ADDRESS and
    ``response_origin`` to SOURCE-ADDRESS the same way.
    """

    transaction_id: bytes
    success: bool
    mapped: Address | None = None
    mapped_xor: bool = False
    other_address: Address | None = None
    response_origin: Address | None = None
    error_code: int | None = None
    error_reason: str = ""
    software: str | None = None
    fingerprint: bool = False


# --------------------------------------------------------------------------- building


def new_transaction_id() -> bytes:
    """96 random bits (RFC 8489 §5: uniformly random, from a cryptographic source)."""
    return os.urandom(TRANSACTION_ID_LENGTH)


def message_type(method: int, cls: MessageClass) -> int:
    """Interleave method and class bits into the 14-bit message type (RFC 8489 §5)."""
    if not 0 <= method <= 0xFFF:
        raise ValueError(f"STUN method out of range: {method:#x}")
    c = int(cls)
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 0b01) << 4)
        | ((c & 0b10) << 7)
    )


def split_message_type(msg_type: int) -> tuple[int, MessageClass]:
    """The inverse of :func:`message_type`."""
    method = (msg_type & 0x000F) | ((msg_type >> 1) & 0x0070) | ((msg_type >> 2) & 0x0F80)
    cls = MessageClass(((msg_type >> 4) & 0b01) | ((msg_type >> 7) & 0b10))
    return method, cls


def _pad(n: int) -> int:
    return -n % 4


def encode_message(
    method: int,
    cls: MessageClass,
    transaction_id: bytes,
    attributes: Iterable[tuple[int, bytes]] = (),
    *,
    fingerprint: bool = False,
) -> bytes:
    """Frame a STUN message; with ``fingerprint`` a FINGERPRINT attribute is appended."""
    if len(transaction_id) != TRANSACTION_ID_LENGTH:
        raise ValueError("a STUN transaction id is 12 bytes")
    body = bytearray()
    for attr_type, value in attributes:
        if len(value) > 0xFFFF:
            raise ValueError(f"attribute {attr_type:#06x} too long")
        body += _ATTR_HEADER.pack(attr_type, len(value)) + value + bytes(_pad(len(value)))
    length = len(body) + (8 if fingerprint else 0)
    data = _HEADER.pack(message_type(method, cls), length, MAGIC_COOKIE, transaction_id) + body
    if fingerprint:
        crc = (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        data += _ATTR_HEADER.pack(Attr.FINGERPRINT, 4) + crc.to_bytes(4, "big")
    return bytes(data)


CHANGE_IP = 0x04  # CHANGE-REQUEST flags (RFC 5780 §7.2): answer from the other address
CHANGE_PORT = 0x02  # ... from the other port


def encode_binding_request(
    transaction_id: bytes | None = None,
    *,
    fingerprint: bool = True,
    software: str | None = None,
    change: int = 0,
) -> tuple[bytes, bytes]:
    """A Binding request; returns ``(transaction_id, datagram)``.

    FINGERPRINT is on by default: the answer shares WireGuard's port, and the checksum lets
    both ends tell STUN from other traffic (RFC 8489 §7). RFC 3489 servers ignore it
    (its type is comprehension-optional). ``change`` (CHANGE_IP | CHANGE_PORT) asks an
    RFC 5780 server to answer from its other address/port: the NAT filtering tests.
    """
    tid = transaction_id if transaction_id is not None else new_transaction_id()
    attrs = [(Attr.SOFTWARE, software.encode())] if software else []
    if change:
        attrs.append((Attr.CHANGE_REQUEST, (change & (CHANGE_IP | CHANGE_PORT)).to_bytes(4, "big")))
    return tid, encode_message(
        METHOD_BINDING, MessageClass.REQUEST, tid, attrs, fingerprint=fingerprint
    )


def encode_address(address: Address, *, xor: bool, transaction_id: bytes = b"") -> bytes:
    """The value of a (XOR-)MAPPED-ADDRESS-style attribute."""
    ip = ipaddress.ip_address(address[0])
    port = address[1]
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    raw = ip.packed
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = _xor_bytes(raw, MAGIC_COOKIE_BYTES + transaction_id)
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    return struct.pack("!BBH", 0, family, port) + raw


def encode_error_code(code: int, reason: str) -> bytes:
    if not 300 <= code <= 699:
        raise ValueError(f"STUN error code out of range: {code}")
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def encode_binding_response(
    transaction_id: bytes,
    mapped: Address,
    *,
    xor: bool = True,
    classic: bool = False,
    other_address: Address | None = None,
    response_origin: Address | None = None,
    fingerprint: bool = False,
) -> bytes:
    """A Binding success response, as a server would send it (tests and fake servers).

    ``xor`` adds XOR-MAPPED-ADDRESS, ``classic`` adds MAPPED-ADDRESS (RFC 3489 style).
    """
    attrs: list[tuple[int, bytes]] = []
    if xor:
        attrs.append(
            (
                Attr.XOR_MAPPED_ADDRESS,
                encode_address(mapped, xor=True, transaction_id=transaction_id),
            )
        )
    if classic:
        attrs.append((Attr.MAPPED_ADDRESS, encode_address(mapped, xor=False)))
    if response_origin is not None:
        attrs.append((Attr.RESPONSE_ORIGIN, encode_address(response_origin, xor=False)))
    if other_address is not None:
        attrs.append((Attr.OTHER_ADDRESS, encode_address(other_address, xor=False)))
    return encode_message(
        METHOD_BINDING, MessageClass.SUCCESS, transaction_id, attrs, fingerprint=fingerprint
    )


def encode_binding_error(
    transaction_id: bytes, code: int, reason: str, *, fingerprint: bool = False
) -> bytes:
    """A Binding error response (tests and fake servers)."""
    attrs = [(Attr.ERROR_CODE, encode_error_code(code, reason))]
    return encode_message(
        METHOD_BINDING, MessageClass.ERROR, transaction_id, attrs, fingerprint=fingerprint
    )


# --------------------------------------------------------------------------- parsing


def _xor_bytes(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=False))


def is_stun(data: bytes) -> bool:
    """Cheap demultiplexing test (RFC 8489 §7): top bits zero, magic cookie, sane length."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] & 0xC0 == 0
        and data[4:8] == MAGIC_COOKIE_BYTES
        and data[3] & 0x03 == 0
    )


def parse_message(data: bytes) -> StunMessage:
    """Check the framing of one datagram and split it into attributes.

    Raises :class:`StunParseError` for anything malformed: short header, top bits set,
    missing magic cookie, length not a multiple of 4 or not matching the datagram,
    truncated attribute or padding, FINGERPRINT that is misplaced, mis-sized or wrong.
    """
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise StunParseError(f"STUN message too short: {len(data)} bytes")
    msg_type, length, cookie, tid = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise StunParseError("not a STUN message: the two top bits are set")
    if cookie != MAGIC_COOKIE:
        raise StunParseError("no STUN magic cookie (RFC 3489 messages are not accepted)")
    if length % 4:
        raise StunParseError(f"STUN message length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise StunParseError(
            f"STUN message length field says {length}, datagram holds {len(data) - HEADER_LENGTH}"
        )
    method, cls = split_message_type(msg_type)

    attributes: list[tuple[int, bytes]] = []
    fingerprint = False
    after_integrity = False
    pos = HEADER_LENGTH
    end = len(data)
    while pos < end:
        if end - pos < 4:
            raise StunParseError(f"truncated attribute header at offset {pos}")
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        value_start = pos + 4
        next_pos = value_start + attr_len + _pad(attr_len)
        if next_pos > end:
            raise StunParseError(
                f"attribute {attr_type:#06x} at offset {pos} overruns the message "
                f"({attr_len} bytes plus padding)"
            )
        value = data[value_start : value_start + attr_len]
        if attr_type == Attr.FINGERPRINT:
            if attr_len != 4:
                raise StunParseError(f"FINGERPRINT must be 4 bytes, not {attr_len}")
            if next_pos != end:
                raise StunParseError("FINGERPRINT is not the last attribute")
            expected = (binascii.crc32(data[:pos]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            if int.from_bytes(value, "big") != expected:
                raise StunParseError("FINGERPRINT does not match the message")
            fingerprint = True
        elif not after_integrity or attr_type == Attr.MESSAGE_INTEGRITY_SHA256:
            attributes.append((attr_type, value))
            if attr_type == Attr.MESSAGE_INTEGRITY:
                after_integrity = True
        pos = next_pos
    return StunMessage(method, cls, tid, tuple(attributes), fingerprint)


def decode_address(value: bytes, *, xor: bool, transaction_id: bytes = b"") -> Address:
    """Decode a (XOR-)MAPPED-ADDRESS-style value to ``(ip, port)``."""
    if len(value) < 4:
        raise StunParseError(f"address attribute too short: {len(value)} bytes")
    family = value[1]
    port = int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == _FAMILY_IPV4:
        if len(raw) != 4:
            raise StunParseError(f"IPv4 address attribute must be 8 bytes, not {len(value)}")
    elif family == _FAMILY_IPV6:
        if len(raw) != 16:
            raise StunParseError(f"IPv6 address attribute must be 20 bytes, not {len(value)}")
    else:
        raise StunParseError(f"unknown address family {family:#04x}")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = _xor_bytes(raw, MAGIC_COOKIE_BYTES + transaction_id)
    if family == _FAMILY_IPV4:
        return socket.inet_ntop(socket.AF_INET, raw), port
    return str(ipaddress.IPv6Address(raw)), port


def decode_error_code(value: bytes) -> tuple[int, str]:
    """ERROR-CODE → ``(code, reason)``; the class must be 3–6 and the number 0–99."""
    if len(value) < 4:
        raise StunParseError(f"ERROR-CODE too short: {len(value)} bytes")
    cls = value[2] & 0x07
    number = value[3]
    if not 3 <= cls <= 6 or number > 99:
        raise StunParseError(f"ERROR-CODE out of range: class {cls}, number {number}")
    return cls * 100 + number, value[4:].decode("utf-8", errors="replace")


def _optional_address(msg: StunMessage, primary: int, fallback: int) -> Address | None:
    value = msg.get(primary)
    if value is None:
        value = msg.get(fallback)
    return None if value is None else decode_address(value, xor=False)


def decode_binding_response(msg: StunMessage) -> BindingResponse:
    """Judge a framed message as a Binding response (RFC 8489 §6.3).

    Raises :class:`StunParseError` when it is not a Binding response, carries an unknown
    comprehension-required attribute, lacks a mapped address (success) or ERROR-CODE
    (error), or any address/ERROR-CODE it carries is malformed.
    """
    if msg.method != METHOD_BINDING:
        raise StunParseError(f"not a Binding message (method {msg.method:#x})")
    if msg.cls not in (MessageClass.SUCCESS, MessageClass.ERROR):
        raise StunParseError(f"not a response ({msg.cls.name.lower()})")
    unknown = sorted({t for t, _ in msg.attributes if t < 0x8000 and t not in _KNOWN_ATTRIBUTES})
    if unknown:
        names = ", ".join(f"{t:#06x}" for t in unknown)
        raise StunParseError(f"response carries unknown comprehension-required attributes: {names}")
    software_raw = msg.get(Attr.SOFTWARE)
    software = None if software_raw is None else software_raw.decode("utf-8", errors="replace")
    other = _optional_address(msg, Attr.OTHER_ADDRESS, Attr.CHANGED_ADDRESS)
    origin = _optional_address(msg, Attr.RESPONSE_ORIGIN, Attr.SOURCE_ADDRESS)

    if msg.cls is MessageClass.ERROR:
        raw_error = msg.get(Attr.ERROR_CODE)
        if raw_error is None:
            raise StunParseError("error response without ERROR-CODE")
        code, reason = decode_error_code(raw_error)
        return BindingResponse(
            msg.transaction_id,
            success=False,
            other_address=other,
            response_origin=origin,
            error_code=code,
            error_reason=reason,
            software=software,
            fingerprint=msg.fingerprint,
        )

    xor_value = msg.get(Attr.XOR_MAPPED_ADDRESS)
    if xor_value is not None:
        mapped = decode_address(xor_value, xor=True, transaction_id=msg.transaction_id)
        mapped_xor = True
    else:
        plain = msg.get(Attr.MAPPED_ADDRESS)
        if plain is None:
            raise StunParseError("success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")
        mapped = decode_address(plain, xor=False)
        mapped_xor = False
    return BindingResponse(
        msg.transaction_id,
        success=True,
        mapped=mapped,
        mapped_xor=mapped_xor,
        other_address=other,
        response_origin=origin,
        software=software,
        fingerprint=msg.fingerprint,
    )


def parse_binding_response(data: bytes) -> BindingResponse:
    """:func:`parse_message` then :func:`decode_binding_response`."""
    return decode_binding_response(parse_message(data))
