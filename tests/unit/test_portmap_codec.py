"""PCP (RFC 6887) and NAT-PMP (RFC 6886) codecs, byte for byte from the RFCs' layouts."""

from __future__ import annotations

import random
import struct

import pytest

from stunmeshd.errors import PortMapParseError
from stunmeshd.portmap import natpmp, pcp

NONCE = bytes(range(1, 13))
V4_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"

# --- NAT-PMP -----------------------------------------------------------------------------


def test_natpmp_requests_are_the_rfc_layouts() -> None:
    assert natpmp.external_address_request() == b"\x00\x00"
    # version 0, opcode 1 (UDP), reserved 0, internal 51820, suggested 51820, lifetime 7200
    assert natpmp.map_request(51820, 51820, 7200) == bytes.fromhex("0001 0000 ca6c ca6c 00001c20")
    # §3.4: a delete is lifetime 0 and suggested external port 0
    assert natpmp.delete_request(51820) == bytes.fromhex("0001 0000 ca6c 0000 00000000")


def test_natpmp_external_address_answer() -> None:
    # what miniupnpd sent in the lab: result 0, epoch 2, address 192.0.3.10
    got = natpmp.parse_external_address_response(bytes.fromhex("0080 0000 00000002 c000030a"))
    assert got == natpmp.ExternalAddressResponse(0, 2, "192.0.3.10")


def test_natpmp_map_answer_from_miniupnpd() -> None:
    got = natpmp.parse_map_response(b"\x00\x81\x00\x00\x00\x00\x00\x02\xcal\xcal\x00\x00\x00x")
    assert got == natpmp.MapResponse(0, 2, 51820, 51820, 120)


def test_natpmp_refusal_is_returned_with_its_code() -> None:
    # miniupnpd with a reserved external address answers NETWORK_FAILURE (3), 16 bytes
    got = natpmp.parse_map_response(bytes.fromhex("0081 0003 00000001 ca6c ca6c 00000078"))
    assert got.result == natpmp.Result.NETWORK_FAILURE
    # an 8-byte error answer (no mapping fields) is fine too
    assert natpmp.parse_map_response(bytes.fromhex("0081 0002 00000001")).result == 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x80\x00",  # truncated header
        bytes.fromhex("0180 0000 00000002 c000030a"),  # version 1
        bytes.fromhex("0081 0000 00000002 c000030a"),  # answer to the wrong opcode
        bytes.fromhex("0000 0000 00000002 c000030a"),  # a request, not an answer
        bytes.fromhex("0080 0000 00000002 c00003"),  # success, address cut
        bytes.fromhex("0080 0000 00000002 c000030a 00"),  # success, trailing byte
    ],
)
def test_natpmp_malformed_address_answers_raise(data: bytes) -> None:
    with pytest.raises(PortMapParseError):
        natpmp.parse_external_address_response(data)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("0081 0000 00000002 ca6c ca6c 0000"),  # success, lifetime cut
        bytes.fromhex("0081 0000 00000002 0000 ca6c 00000078"),  # internal port 0
        bytes.fromhex("0081 0000 00000002 ca6c 0000 00000078"),  # external 0 with a lifetime
        bytes.fromhex("0082 0000 00000002 ca6c ca6c 00000078"),  # a TCP answer
    ],
)
def test_natpmp_malformed_map_answers_raise(data: bytes) -> None:
    with pytest.raises(PortMapParseError):
        natpmp.parse_map_response(data)


def test_natpmp_request_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        natpmp.map_request(0, 1, 1)
    with pytest.raises(ValueError):
        natpmp.map_request(1, 70000, 1)
    with pytest.raises(ValueError):
        natpmp.map_request(1, 1, -1)


# --- PCP ---------------------------------------------------------------------------------


def pcp_header(op: int, result: int, lifetime: int, epoch: int, version: int = 2) -> bytes:
    return struct.pack("!BBBBII", version, 0x80 | op, 0, result, lifetime, epoch) + b"\0" * 12


def map_body(nonce: bytes, internal: int, external: int, ip: bytes, proto: int = 17) -> bytes:
    return nonce + bytes([proto]) + b"\0\0\0" + struct.pack("!HH", internal, external) + ip


def test_pcp_announce_request_layout() -> None:
    got = pcp.announce_request("198.18.1.2")
    assert got == b"\x02\x00\x00\x00" + b"\0\0\0\0" + V4_MAPPED_PREFIX + bytes([198, 18, 1, 2])
    assert len(got) == 24


def test_pcp_map_request_layout() -> None:
    got = pcp.map_request(nonce=NONCE, client_ip="198.18.1.2", internal_port=51820, lifetime=7200)
    assert len(got) == 60  # 24-byte header + 36-byte MAP body (RFC 6887 §11.1)
    assert got[:4] == b"\x02\x01\x00\x00"
    assert got[4:8] == (7200).to_bytes(4, "big")
    assert got[8:24] == V4_MAPPED_PREFIX + bytes([198, 18, 1, 2])
    assert got[24:36] == NONCE
    assert got[36] == 17 and got[37:40] == b"\0\0\0"
    assert got[40:42] == (51820).to_bytes(2, "big") and got[42:44] == b"\0\0"
    assert got[44:60] == V4_MAPPED_PREFIX + b"\0\0\0\0"  # "any IPv4 address"


def test_pcp_map_success() -> None:
    ip = V4_MAPPED_PREFIX + bytes([192, 0, 3, 10])
    data = pcp_header(1, 0, 120, 77) + map_body(NONCE, 51820, 40001, ip)
    got = pcp.parse_response(data, opcode=pcp.OP_MAP, nonce=NONCE)
    assert got == pcp.Response(1, 0, 120, 77, NONCE, 51820, 40001, "192.0.3.10")


def test_pcp_map_success_with_an_option_is_accepted() -> None:
    ip = V4_MAPPED_PREFIX + bytes([192, 0, 3, 10])
    option = struct.pack("!BBH", 3, 0, 1) + b"\x01\0\0\0"  # PREFER_FAILURE-like, padded
    data = pcp_header(1, 0, 120, 77) + map_body(NONCE, 51820, 51820, ip) + option
    assert pcp.parse_response(data, opcode=1, nonce=NONCE).external_port == 51820


def test_pcp_error_answer_is_returned_with_its_code() -> None:
    data = pcp_header(1, pcp.Result.NOT_AUTHORIZED, 30, 5) + map_body(NONCE, 51820, 0, b"\0" * 16)
    got = pcp.parse_response(data, opcode=1, nonce=NONCE)
    assert (got.result, got.lifetime) == (pcp.Result.NOT_AUTHORIZED, 30)
    short = pcp_header(1, pcp.Result.UNSUPP_OPCODE, 0, 5)
    assert pcp.parse_response(short, opcode=1, nonce=NONCE).result == pcp.Result.UNSUPP_OPCODE


def test_pcp_announce_answer() -> None:
    got = pcp.parse_response(pcp_header(0, 0, 0, 9), opcode=pcp.OP_ANNOUNCE)
    assert (got.opcode, got.result, got.epoch) == (0, 0, 9)


OK_IP = V4_MAPPED_PREFIX + bytes([192, 0, 3, 10])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        pcp_header(1, 0, 120, 1)[:20],  # truncated
        pcp_header(1, 0, 120, 1) + b"\0",  # not a multiple of 4
        pcp_header(1, 0, 120, 1) + b"\0" * 1100,  # too long
        pcp_header(1, 0, 120, 1, version=0) + map_body(NONCE, 51820, 1, OK_IP),  # NAT-PMP
        pcp_header(1, 0, 120, 1)[:1] + b"\x01" + pcp_header(1, 0, 120, 1)[2:],  # a request
        pcp_header(0, 0, 120, 1) + map_body(NONCE, 51820, 1, OK_IP),  # wrong opcode
        pcp_header(1, 0, 120, 1),  # success without a MAP body
        pcp_header(1, 0, 120, 1) + map_body(bytes(12), 51820, 1, OK_IP),  # foreign nonce
        pcp_header(1, 0, 120, 1) + map_body(NONCE, 51820, 1, OK_IP, proto=6),  # TCP
        pcp_header(1, 0, 120, 1) + map_body(NONCE, 51820, 0, OK_IP),  # external port 0
        pcp_header(1, 0, 120, 1) + map_body(NONCE, 0, 1, OK_IP),  # internal port 0
        pcp_header(1, 0, 120, 1) + map_body(NONCE, 51820, 1, OK_IP) + b"\x01\0\0\x08",  # option
    ],
)
def test_pcp_malformed_answers_raise(data: bytes) -> None:
    with pytest.raises(PortMapParseError):
        pcp.parse_response(data, opcode=1, nonce=NONCE)


def test_any_bytes_parse_or_raise_the_one_error() -> None:
    rng = random.Random(6887)
    seeds = [pcp_header(1, 0, 120, 1) + map_body(NONCE, 51820, 1, OK_IP), b"\x00\x81" + bytes(14)]
    samples = [rng.randbytes(rng.randrange(0, 1200)) for _ in range(2000)]
    for seed in seeds:  # mutations of valid answers reach the deeper checks
        for _ in range(2000):
            data = bytearray(seed)
            data[rng.randrange(len(data))] = rng.randrange(256)
            samples.append(bytes(data[: rng.randrange(len(data) + 1)]))
    for data in samples:
        _parse_all(data)


def _parse_all(data: bytes) -> None:
    for parse in (
        natpmp.parse_external_address_response,
        natpmp.parse_map_response,
        lambda d: pcp.parse_response(d, opcode=1, nonce=NONCE),
        lambda d: pcp.parse_response(d, opcode=0),
    ):
        try:
            parse(data)
        except PortMapParseError:
            pass
