"""The STUN codec: RFC 5769 vectors, round trips, every framing rule, and a seeded fuzz."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from stunmeshd.errors import StunError
from stunmeshd.stun.codec import (
    MAGIC_COOKIE,
    METHOD_BINDING,
    Attr,
    MessageClass,
    StunParseError,
    decode_binding_response,
    encode_address,
    encode_binding_error,
    encode_binding_request,
    encode_binding_response,
    encode_error_code,
    encode_message,
    is_stun,
    message_type,
    parse_binding_response,
    parse_message,
    split_message_type,
)

# RFC 5769 §2.1 sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
# MESSAGE-INTEGRITY, FINGERPRINT; padding bytes are spaces).
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e20746573742063 6c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf".replace(" ", "")
)
# RFC 5769 §2.2 sample IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
RFC5769_RESPONSE_V4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
# RFC 5769 §2.3 sample IPv6 response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
RFC5769_RESPONSE_V6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
TID = bytes(range(12))


def test_rfc5769_ipv4_response() -> None:
    r = parse_binding_response(RFC5769_RESPONSE_V4)
    assert r.success and r.mapped == ("192.0.2.1", 32853) and r.mapped_xor
    assert r.transaction_id == RFC5769_TID
    assert r.software == "test vector"
    assert r.fingerprint  # present and verified; MESSAGE-INTEGRITY is known and ignored


def test_rfc5769_ipv6_response() -> None:
    r = parse_binding_response(RFC5769_RESPONSE_V6)
    assert r.success and r.mapped == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert r.fingerprint


def test_rfc5769_request_frames_but_is_not_a_response() -> None:
    m = parse_message(RFC5769_REQUEST)
    assert (m.method, m.cls, m.transaction_id) == (
        METHOD_BINDING,
        MessageClass.REQUEST,
        RFC5769_TID,
    )
    assert m.fingerprint
    assert m.get(Attr.USERNAME) == b"evtj:h6vY"  # padding (spaces) is not part of the value
    assert m.get(Attr.SOFTWARE) == b"STUN test client"
    with pytest.raises(StunParseError, match="not a response"):
        decode_binding_response(m)


@pytest.mark.parametrize("vector", [RFC5769_REQUEST, RFC5769_RESPONSE_V4, RFC5769_RESPONSE_V6])
def test_any_flipped_bit_in_a_vector_is_caught_by_its_fingerprint(vector: bytes) -> None:
    for position in range(20, len(vector) - 8):  # attributes, up to the FINGERPRINT itself
        for bit in (0x01, 0x80):
            broken = bytearray(vector)
            broken[position] ^= bit
            with pytest.raises(StunParseError):
                parse_message(bytes(broken))


def test_parse_error_is_both_a_stun_error_and_a_value_error() -> None:
    with pytest.raises(StunError):
        parse_message(b"")
    with pytest.raises(ValueError):
        parse_message(b"")


def test_binding_request_layout() -> None:
    tid, data = encode_binding_request(fingerprint=False)
    assert len(tid) == 12
    assert data == b"\x00\x01\x00\x00" + struct.pack("!I", MAGIC_COOKIE) + tid
    tid2, data2 = encode_binding_request()
    assert tid2 != tid  # fresh random transaction ids
    assert len(data2) == 28 and data2[2:4] == b"\x00\x08"
    m = parse_message(data2)
    assert m.fingerprint and m.cls is MessageClass.REQUEST and m.attributes == ()
    assert is_stun(data2)


def test_fingerprint_value_follows_rfc8489() -> None:
    _, data = encode_binding_request(TID)
    expected = (zlib.crc32(data[:-8]) ^ 0x5354554E) & 0xFFFFFFFF
    assert data[-8:] == struct.pack("!HHI", 0x8028, 4, expected)


def test_message_type_interleaving_round_trips() -> None:
    assert message_type(METHOD_BINDING, MessageClass.SUCCESS) == 0x0101
    assert message_type(METHOD_BINDING, MessageClass.ERROR) == 0x0111
    assert message_type(METHOD_BINDING, MessageClass.INDICATION) == 0x0011
    for method in (0x001, 0x003, 0x00F, 0x070, 0xF80, 0xFFF):
        for cls in MessageClass:
            assert split_message_type(message_type(method, cls)) == (method, cls)


@pytest.mark.parametrize(
    "mapped",
    [("203.0.113.7", 51820), ("198.51.100.10", 40000), ("2001:db8::7", 51820), ("::1", 1)],
)
def test_success_response_round_trip(mapped: tuple[str, int]) -> None:
    v6 = ":" in mapped[0]
    other = ("2001:db8::3", 3479) if v6 else ("203.0.113.1", 3479)
    origin = ("2001:db8::1", 3478) if v6 else ("198.51.100.1", 3478)
    data = encode_binding_response(
        TID, mapped, classic=True, other_address=other, response_origin=origin, fingerprint=True
    )
    r = parse_binding_response(data)
    assert (r.mapped, r.mapped_xor, r.other_address, r.response_origin) == (
        mapped,
        True,
        other,
        origin,
    )


def test_xor_mapped_address_wins_over_mapped_address() -> None:
    attrs = [
        (Attr.MAPPED_ADDRESS, encode_address(("192.0.2.99", 9), xor=False)),
        (
            Attr.XOR_MAPPED_ADDRESS,
            encode_address(("203.0.113.7", 51820), xor=True, transaction_id=TID),
        ),
    ]
    r = parse_binding_response(encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs))
    assert r.mapped == ("203.0.113.7", 51820) and r.mapped_xor


def test_rfc3489_server_answer_uses_mapped_changed_and_source_address() -> None:
    # A pure RFC 3489 answer: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS, plus 0x8020
    # (the XOR-MAPPED-ADDRESS type of early rfc3489bis drafts: comprehension-optional, skipped).
    attrs = [
        (Attr.MAPPED_ADDRESS, encode_address(("198.51.100.10", 40000), xor=False)),
        (Attr.SOURCE_ADDRESS, encode_address(("198.51.100.1", 3478), xor=False)),
        (Attr.CHANGED_ADDRESS, encode_address(("203.0.113.1", 3479), xor=False)),
        (0x8020, encode_address(("198.51.100.10", 40000), xor=True, transaction_id=TID)),
    ]
    r = parse_binding_response(encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs))
    assert r.mapped == ("198.51.100.10", 40000) and not r.mapped_xor
    assert r.response_origin == ("198.51.100.1", 3478)
    assert r.other_address == ("203.0.113.1", 3479)


def test_rfc5780_attributes_win_over_rfc3489_ones() -> None:
    attrs = [
        (Attr.MAPPED_ADDRESS, encode_address(("198.51.100.10", 40000), xor=False)),
        (Attr.CHANGED_ADDRESS, encode_address(("192.0.2.5", 1), xor=False)),
        (Attr.OTHER_ADDRESS, encode_address(("203.0.113.1", 3479), xor=False)),
        (Attr.SOURCE_ADDRESS, encode_address(("192.0.2.6", 2), xor=False)),
        (Attr.RESPONSE_ORIGIN, encode_address(("198.51.100.1", 3478), xor=False)),
    ]
    r = parse_binding_response(encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs))
    assert r.other_address == ("203.0.113.1", 3479)
    assert r.response_origin == ("198.51.100.1", 3478)


def test_first_of_duplicate_attributes_counts() -> None:
    attrs = [
        (Attr.XOR_MAPPED_ADDRESS, encode_address(("203.0.113.7", 1), xor=True, transaction_id=TID)),
        (Attr.XOR_MAPPED_ADDRESS, encode_address(("203.0.113.8", 2), xor=True, transaction_id=TID)),
    ]
    r = parse_binding_response(encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs))
    assert r.mapped == ("203.0.113.7", 1)


def test_attributes_after_message_integrity_are_ignored() -> None:
    attrs = [
        (Attr.MESSAGE_INTEGRITY, bytes(20)),
        (Attr.XOR_MAPPED_ADDRESS, encode_address(("203.0.113.7", 1), xor=True, transaction_id=TID)),
    ]
    data = encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs, fingerprint=True)
    assert parse_message(data).get(Attr.XOR_MAPPED_ADDRESS) is None
    with pytest.raises(StunParseError, match="without XOR-MAPPED-ADDRESS"):
        parse_binding_response(data)


def test_error_response() -> None:
    r = parse_binding_response(encode_binding_error(TID, 420, "Unknown Attribute"))
    assert not r.success and r.error_code == 420 and r.error_reason == "Unknown Attribute"
    assert r.mapped is None


def test_error_response_without_error_code_is_refused() -> None:
    data = encode_message(METHOD_BINDING, MessageClass.ERROR, TID, [])
    with pytest.raises(StunParseError, match="without ERROR-CODE"):
        parse_binding_response(data)


@pytest.mark.parametrize(
    "value", [b"\x00\x00\x02\x00", b"\x00\x00\x07\x00", b"\x00\x00\x04\x64", b"\0\0\4"]
)
def test_error_code_out_of_range_or_short(value: bytes) -> None:
    data = encode_message(METHOD_BINDING, MessageClass.ERROR, TID, [(Attr.ERROR_CODE, value)])
    with pytest.raises(StunParseError, match="ERROR-CODE"):
        parse_binding_response(data)


def test_unknown_comprehension_optional_attribute_is_skipped() -> None:
    attrs = [
        (0xC0DE, b"whatever, odd length"),
        (Attr.XOR_MAPPED_ADDRESS, encode_address(("203.0.113.7", 9), xor=True, transaction_id=TID)),
    ]
    r = parse_binding_response(encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, attrs))
    assert r.mapped == ("203.0.113.7", 9)


@pytest.mark.parametrize("cls", [MessageClass.SUCCESS, MessageClass.ERROR])
def test_unknown_comprehension_required_attribute_makes_a_response_unusable(
    cls: MessageClass,
) -> None:
    attrs = [
        (0x0077, b"\x01\x02"),
        (Attr.XOR_MAPPED_ADDRESS, encode_address(("203.0.113.7", 9), xor=True, transaction_id=TID)),
        (Attr.ERROR_CODE, encode_error_code(500, "x")),
    ]
    data = encode_message(METHOD_BINDING, cls, TID, attrs)
    parse_message(data)  # framing is fine ...
    with pytest.raises(StunParseError, match="0x0077"):  # ... the meaning is not
        parse_binding_response(data)


def test_other_methods_are_not_binding_responses() -> None:
    data = encode_message(0x003, MessageClass.SUCCESS, TID, [])  # Allocate
    with pytest.raises(StunParseError, match="not a Binding"):
        parse_binding_response(data)


def _success(extra: bytes = b"", *, length_delta: int = 0) -> bytearray:
    data = bytearray(encode_binding_response(TID, ("203.0.113.7", 51820)))
    data += extra
    struct.pack_into("!H", data, 2, len(data) - 20 + length_delta)
    return data


def _with_attr(attr_type: int, value: bytes) -> bytes:
    return encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, [(attr_type, value)])


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "too short"),
    "short header": (bytes(19), "too short"),
    "top bits": (b"\xc1" + bytes(_success())[1:], "top bits"),
    "rfc3489 (no cookie)": (
        bytes(_success())[:4] + bytes(4) + bytes(_success())[8:],
        "magic cookie",
    ),
    "length not multiple of 4": (bytes(_success(b"\x00\x00")), "multiple of 4"),
    "length longer than datagram": (bytes(_success(length_delta=4)), "length field says"),
    "length shorter than datagram": (
        bytes(_success(bytes(4), length_delta=-4)),
        "length field says",
    ),
    "attribute overrun": (bytes(_success(b"\x80\x22\x00\x10abcd")), "overruns"),
    "missing padding": (bytes(_success(b"\x80\x22\x00\x05abcd")), "overruns"),
    "bad family": (
        _with_attr(Attr.XOR_MAPPED_ADDRESS, b"\x00\x03\x00\x01" + bytes(4)),
        "family",
    ),
    "ipv4 wrong length": (
        _with_attr(Attr.XOR_MAPPED_ADDRESS, b"\x00\x01\x00\x01" + bytes(16)),
        "IPv4 address attribute",
    ),
    "ipv6 wrong length": (
        _with_attr(Attr.MAPPED_ADDRESS, b"\x00\x02\x00\x01" + bytes(4)),
        "IPv6 address attribute",
    ),
    "address too short": (_with_attr(Attr.MAPPED_ADDRESS, b"\x00\x01"), "too short"),
    "bad other-address": (
        encode_message(
            METHOD_BINDING,
            MessageClass.SUCCESS,
            TID,
            [
                (Attr.MAPPED_ADDRESS, encode_address(("203.0.113.7", 9), xor=False)),
                (Attr.OTHER_ADDRESS, b"\x00\x09\x00\x01" + bytes(4)),
            ],
        ),
        "family",
    ),
    "fingerprint wrong": (
        RFC5769_RESPONSE_V4[:-1] + bytes([RFC5769_RESPONSE_V4[-1] ^ 1]),
        "FINGERPRINT does not match",
    ),
    "fingerprint not last": (
        encode_message(
            METHOD_BINDING,
            MessageClass.SUCCESS,
            TID,
            [(Attr.FINGERPRINT, bytes(4)), (Attr.SOFTWARE, b"x")],
        ),
        "not the last",
    ),
    "fingerprint wrong size": (_with_attr(Attr.FINGERPRINT, bytes(8)), "must be 4 bytes"),
    "no mapped address": (
        encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, []),
        "without XOR-MAPPED-ADDRESS",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_raises_the_documented_error(name: str) -> None:
    data, reason = MALFORMED[name]
    with pytest.raises(StunParseError, match=reason):
        parse_binding_response(data)


def test_padding_content_is_not_checked() -> None:
    good = bytearray(
        encode_message(METHOD_BINDING, MessageClass.SUCCESS, TID, [(Attr.SOFTWARE, b"abc")])
    )
    good[-1] = 0xFF  # the padding byte after "abc"
    assert parse_message(bytes(good)).get(Attr.SOFTWARE) == b"abc"


def test_is_stun_rejects_wireguard_and_rfc3489_datagrams() -> None:
    wg_initiation = b"\x01\x00\x00\x00" + bytes(144)
    assert not is_stun(wg_initiation)
    assert not is_stun(MALFORMED["rfc3489 (no cookie)"])
    assert is_stun(RFC5769_RESPONSE_V4)


# --------------------------------------------------------------------------- fuzz


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if choice == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif choice == 2:  # insert random bytes
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 12))
        elif choice == 3 and len(buf) >= 4:  # rewrite the message length
            struct.pack_into(
                "!H", buf, 2, rng.choice([0, 4, len(buf) - 20, rng.randrange(65536)]) & 0xFFFF
            )
        elif choice == 4 and len(buf) >= 24:  # rewrite an attribute length near the start
            struct.pack_into("!H", buf, 22, rng.randrange(65536))
        elif choice == 5 and len(buf) >= 24:  # rewrite an attribute type
            struct.pack_into(
                "!H", buf, 20, rng.choice([0x0001, 0x0009, 0x0020, 0x8028, 0x0077, 0x802C])
            )
        else:  # fix the length field so deeper code runs
            if len(buf) >= 4:
                struct.pack_into("!H", buf, 2, max(0, len(buf) - 20) & 0xFFFF)
    return bytes(buf)


def _random_valid(rng: random.Random) -> bytes:
    tid = rng.randbytes(12)
    v6 = rng.random() < 0.5
    ip = f"2001:db8::{rng.randrange(65536):x}" if v6 else f"198.51.100.{rng.randrange(1, 255)}"
    kind = rng.randrange(3)
    if kind == 0:
        return encode_binding_response(
            tid,
            (ip, rng.randrange(1, 65536)),
            classic=rng.random() < 0.5,
            other_address=("203.0.113.1", 3479) if rng.random() < 0.5 else None,
            fingerprint=rng.random() < 0.5,
        )
    if kind == 1:
        return encode_binding_error(tid, rng.randrange(300, 700), "x" * rng.randrange(20))
    return rng.choice([RFC5769_REQUEST, RFC5769_RESPONSE_V4, RFC5769_RESPONSE_V6])


def test_fuzz_only_the_documented_error_escapes() -> None:
    rng = random.Random(0x5EED)
    parsed = refused = 0
    for i in range(12_000):
        if i % 4 == 0:  # pure noise, sometimes with a STUN-looking header
            data = rng.randbytes(rng.randrange(64))
            if rng.random() < 0.5 and len(data) >= 8:
                data = data[:4] + struct.pack("!I", MAGIC_COOKIE) + data[8:]
        else:
            data = _mutate(rng, _random_valid(rng))
        try:
            parse_binding_response(data)
        except StunParseError:
            refused += 1
        else:
            parsed += 1
    # Both outcomes must be exercised, or the fuzz proves nothing.
    assert parsed > 500 and refused > 5_000, (parsed, refused)
