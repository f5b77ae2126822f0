"""Fuzzing record opening: whatever a store or a peer hands us, opening raises only
RecordError, and every record it accepts passes the endpoint policy."""

from __future__ import annotations

import ipaddress
import json

from hypothesis import given
from hypothesis import strategies as st

from stunmeshd import crypto
from stunmeshd.crypto import EndpointRecord, RecordGuard
from stunmeshd.endpoint_policy import refusal
from stunmeshd.endpoints import parse_endpoint
from stunmeshd.errors import RecordError

A_PRIV, B_PRIV = b"\x01" * 32, b"\x02" * 32
A_PUB, B_PUB = crypto.public_key(A_PRIV), crypto.public_key(B_PRIV)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
ports = st.integers(-5, 70000)
ipv4_endpoints = st.builds(lambda a, p: f"{a}:{p}", st.ip_addresses(v=4), ports)
ipv6_endpoints = st.builds(lambda a, p: f"[{a}]:{p}", st.ip_addresses(v=6), ports)
endpoint_texts = st.one_of(ipv4_endpoints, ipv6_endpoints, st.text(max_size=60))
record_fields = st.fixed_dictionaries(
    {},
    optional={
        "ipv4": st.one_of(ipv4_endpoints, endpoint_texts, json_values),
        "ipv6": st.one_of(ipv6_endpoints, endpoint_texts, json_values),
        "ts": st.one_of(st.integers(-(2**64), 2**64), json_values),
        "extra": json_values,
    },
)


def check_accepted(record: EndpointRecord) -> None:
    """An accepted record only names endpoints the policy allows, in canonical form."""
    assert record.endpoints
    for endpoint in record.endpoints:
        host, port, _ = parse_endpoint(endpoint)
        assert refusal(ipaddress.ip_address(host), port) is None
    assert EndpointRecord.from_json(record.to_json()) == record  # canonical is a fixed point


def open_plaintext(data: bytes) -> None:
    try:
        record = EndpointRecord.from_json(data)
    except RecordError:
        return
    check_accepted(record)


@given(st.binary(max_size=300))
def test_any_plaintext_bytes_open_or_raise_record_error(data: bytes) -> None:
    open_plaintext(data)


@given(record_fields)
def test_any_json_object_opens_or_raises_record_error(fields: dict[str, object]) -> None:
    open_plaintext(json.dumps(fields).encode())


@given(json_values)
def test_any_json_value_opens_or_raises_record_error(value: object) -> None:
    open_plaintext(json.dumps(value).encode())


@given(st.integers(1, 5000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_json_nested_at_any_depth_is_a_record_error(depth: int, opener: str, inside: bool) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" * (opener != "[") + closer * depth
    text = f'{{"ipv4":"203.0.113.7:1","x":{nested}}}' if inside else nested
    try:
        record = EndpointRecord.from_json(text.encode())
    except RecordError:
        return
    assert inside and record.ipv4 == "203.0.113.7:1"  # shallow enough to parse: fine


@given(record_fields)
def test_sealed_records_open_to_the_same_verdict(fields: dict[str, object]) -> None:
    """Sealing changes nothing: a peer holding the keys gets the same treatment as plaintext."""
    plaintext = json.dumps(fields).encode()
    try:
        expected: EndpointRecord | None = EndpointRecord.from_json(plaintext)
    except RecordError:
        expected = None
    sealed = crypto.seal(plaintext, A_PRIV, B_PUB)
    try:
        opened: EndpointRecord | None = crypto.open_record(sealed, B_PRIV, A_PUB)
    except RecordError:
        opened = None
    assert opened == expected


@given(st.text(max_size=200))
def test_any_stored_text_opens_or_raises_record_error(value: str) -> None:
    try:
        record = crypto.open_record(value, B_PRIV, A_PUB)
    except RecordError:
        return
    check_accepted(record)


@given(st.binary(min_size=0, max_size=120), st.data())
def test_damaged_sealed_values_raise_record_error(plain: bytes, data: st.DataObject) -> None:
    """Any change to a sealed value (a flipped byte, a cut) fails authentication, cleanly."""
    sealed = bytearray.fromhex(crypto.seal(plain, A_PRIV, B_PUB))
    i = data.draw(st.integers(0, len(sealed) - 1))
    if data.draw(st.booleans()):
        sealed[i] ^= data.draw(st.integers(1, 255))
    else:
        del sealed[i:]
    try:
        crypto.open_sealed(sealed.hex(), B_PRIV, A_PUB)
    except RecordError:
        return
    raise AssertionError("a damaged value opened")


@given(record_fields, st.lists(endpoint_texts | json_values, max_size=4))
def test_the_guard_judges_any_record_with_record_error_only(
    fields: dict[str, object], own: list[object]
) -> None:
    try:
        record = EndpointRecord.from_json(json.dumps(fields).encode())
    except RecordError:
        return
    guard = RecordGuard()
    try:
        guard.check(crypto.seal(record.to_json(), A_PRIV, B_PUB), record, own)  # type: ignore[arg-type]
    except RecordError:
        return
    guard.accept(record)
