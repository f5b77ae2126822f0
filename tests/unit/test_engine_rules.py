"""The engine's small decision rules: which endpoint a peer gets, and backoff."""

from __future__ import annotations

import time

import pytest

from stunmeshd.crypto import EndpointRecord
from stunmeshd.engine import Backoff, choose_endpoint, handshake_recent
from stunmeshd.errors import RecordError
from stunmeshd.wireguard.base import PeerInfo

V4, V6 = "203.0.113.7:51820", "[2001:db8::7]:51820"
DUAL = EndpointRecord(ipv4=V4, ipv6=V6)


@pytest.mark.parametrize(
    ("protocol", "record", "expected"),
    [
        ("ipv4", DUAL, V4),
        ("ipv6", DUAL, V6),
        ("prefer_ipv4", DUAL, V4),
        ("prefer_ipv6", DUAL, V6),
        ("prefer_ipv6", EndpointRecord(ipv4=V4), V4),  # falls back when the record lacks v6
        ("prefer_ipv4", EndpointRecord(ipv6=V6), V6),
    ],
)
def test_protocol_picks_the_family(protocol: str, record: EndpointRecord, expected: str) -> None:
    assert choose_endpoint(record, protocol) == expected


def test_prefer_forms_avoid_a_family_whose_path_broke() -> None:
    assert choose_endpoint(DUAL, "prefer_ipv6", frozenset({"ipv6"})) == V4
    # with nothing else to use, the avoided family is still better than nothing
    assert choose_endpoint(EndpointRecord(ipv6=V6), "prefer_ipv6", frozenset({"ipv6"})) == V6


def test_strict_protocols_never_fall_back() -> None:
    with pytest.raises(RecordError, match="peer asks for ipv6 but its record has no ipv6"):
        choose_endpoint(EndpointRecord(ipv4=V4), "ipv6")
    assert choose_endpoint(DUAL, "ipv4", frozenset({"ipv4"})) == V4


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0


def peer(handshake: float) -> PeerInfo:
    return PeerInfo(
        public_key=b"\1" * 32,
        endpoint=V4,
        latest_handshake=handshake,
        rx_bytes=0,
        tx_bytes=0,
        persistent_keepalive=25,
    )


def test_a_handshake_is_recent_for_wireguards_reject_after_time() -> None:
    now = time.time()
    assert handshake_recent(peer(now - 10), now)
    assert not handshake_recent(peer(now - 200), now)
    assert not handshake_recent(peer(0), now)
