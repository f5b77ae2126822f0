"""Fuzzing the STUN codec: whatever arrives on WireGuard's port, parsing raises only
StunParseError, and everything it accepts means what it says."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import assume, given
from hypothesis import strategies as st

from stunmeshd.endpoint_policy import refusal
from stunmeshd.stun.codec import (
    METHOD_BINDING,
    Attr,
    MessageClass,
    StunParseError,
    decode_address,
    decode_binding_response,
    encode_address,
    encode_binding_error,
    encode_binding_response,
    encode_message,
    is_stun,
    parse_binding_response,
    parse_message,
)
from stunmeshd.stun.rawsock import unwrap_ipv4, unwrap_ipv6

tids = st.binary(min_size=12, max_size=12)
ports = st.integers(0, 0xFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: a.compressed)
addresses = st.tuples(st.one_of(ipv4, ipv6), ports)
known_types = st.sampled_from([int(a) for a in Attr])
attr_types = st.one_of(known_types, st.integers(0, 0xFFFF))
attributes = st.lists(st.tuples(attr_types, st.binary(max_size=40)), max_size=8)
classes = st.sampled_from(list(MessageClass))


def parse_everything(data: bytes) -> None:
    """The daemon's receive path: frame, then (for responses) decode. Only StunParseError."""
    try:
        message = parse_message(data)
    except StunParseError:
        return
    if message.cls in (MessageClass.SUCCESS, MessageClass.ERROR):
        try:
            decode_binding_response(message)
        except StunParseError:
            return


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_stun_parse_error(data: bytes) -> None:
    parse_everything(data)
    assert isinstance(is_stun(data), bool)


@given(tids, classes, attributes, st.booleans())
def test_framed_messages_round_trip(
    tid: bytes, cls: MessageClass, attrs: list[tuple[int, bytes]], fingerprint: bool
) -> None:
    """What we frame, we parse back to the same header and attributes (up to the rules)."""
    assume(all(t != Attr.FINGERPRINT for t, _ in attrs))
    data = encode_message(METHOD_BINDING, cls, tid, attrs, fingerprint=fingerprint)
    message = parse_message(data)
    assert (message.method, message.cls, message.transaction_id) == (METHOD_BINDING, cls, tid)
    assert message.fingerprint == fingerprint
    # after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 is kept (RFC 8489 §14.5)
    expected, after_integrity = [], False
    for attr_type, value in attrs:
        if not after_integrity or attr_type == Attr.MESSAGE_INTEGRITY_SHA256:
            expected.append((attr_type, value))
            after_integrity = after_integrity or attr_type == Attr.MESSAGE_INTEGRITY
    assert list(message.attributes) == expected
    parse_everything(data)


@given(tids, classes, attributes, st.booleans(), st.data())
def test_damaged_messages_raise_only_stun_parse_error(
    tid: bytes,
    cls: MessageClass,
    attrs: list[tuple[int, bytes]],
    fingerprint: bool,
    data: st.DataObject,
) -> None:
    """A valid message with bytes flipped, cut or added: parsed or refused, never a crash."""
    wire = bytearray(encode_message(METHOD_BINDING, cls, tid, attrs, fingerprint=fingerprint))
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "add", "length"]))
        if how == "flip" and wire:
            i = data.draw(st.integers(0, len(wire) - 1))
            wire[i] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del wire[data.draw(st.integers(0, len(wire))) :]
        elif how == "add":
            wire += data.draw(st.binary(min_size=1, max_size=16))
        elif how == "length" and len(wire) >= 4:
            struct.pack_into("!H", wire, 2, data.draw(st.integers(0, 0xFFFF)))
    parse_everything(bytes(wire))


@given(addresses, tids, st.booleans())
def test_addresses_round_trip(address: tuple[str, int], tid: bytes, xor: bool) -> None:
    value = encode_address(address, xor=xor, transaction_id=tid)
    assert decode_address(value, xor=xor, transaction_id=tid) == address


@given(st.binary(max_size=24), tids, st.booleans())
def test_any_address_value_decodes_or_raises_stun_parse_error(
    value: bytes, tid: bytes, xor: bool
) -> None:
    try:
        host, port = decode_address(value, xor=xor, transaction_id=tid)
    except StunParseError:
        return
    ipaddress.ip_address(host)
    assert 0 <= port <= 0xFFFF


@given(tids, addresses, st.booleans(), st.booleans(), st.booleans())
def test_binding_responses_decode_to_what_the_server_said(
    tid: bytes, mapped: tuple[str, int], xor: bool, classic: bool, fingerprint: bool
) -> None:
    assume(xor or classic)
    wire = encode_binding_response(tid, mapped, xor=xor, classic=classic, fingerprint=fingerprint)
    response = parse_binding_response(wire)
    assert response.success and response.transaction_id == tid
    assert response.mapped == mapped and response.mapped_xor == xor


@given(tids, st.integers(300, 699), st.text(max_size=60))
def test_error_responses_keep_code_and_reason(tid: bytes, code: int, reason: str) -> None:
    response = parse_binding_response(encode_binding_error(tid, code, reason))
    assert not response.success and response.error_code == code
    assert isinstance(response.error_reason, str)


@given(addresses)
def test_a_mapping_the_policy_accepts_is_a_publishable_record(address: tuple[str, int]) -> None:
    """Item 1's invariant: what the STUN client accepts, the record layer accepts too."""
    from stunmeshd.crypto import EndpointRecord
    from stunmeshd.endpoints import format_endpoint

    host, port = address
    if refusal(ipaddress.ip_address(host), port) is not None:
        return
    endpoint = format_endpoint(host, port)
    field = "ipv6" if endpoint.startswith("[") else "ipv4"
    assert EndpointRecord(**{field: endpoint}).endpoints == (endpoint,)


@given(st.binary(max_size=120), ports)
def test_raw_ipv4_packets_unwrap_or_are_dropped(packet: bytes, port: int) -> None:
    unwrapped = unwrap_ipv4(packet, port)
    if unwrapped is not None:
        payload, (source, _sport) = unwrapped
        assert len(payload) <= len(packet) - 28  # 20-byte IP header at least, 8 for UDP
        socket.inet_pton(socket.AF_INET, source)


@given(st.binary(max_size=120), ports)
def test_raw_ipv6_datagrams_unwrap_or_are_dropped(datagram: bytes, port: int) -> None:
    unwrapped = unwrap_ipv6(datagram, "2001:db8::1%eth0", port)
    if unwrapped is not None:
        payload, (source, _sport) = unwrapped
        assert source == "2001:db8::1" and len(payload) <= len(datagram) - 8
