"""Path health from WireGuard's counters, and the ICMP echo used by the ping monitor."""

from __future__ import annotations

import struct

import pytest

from stunmeshd.health import KEEPALIVE_BYTES, TrafficWatch, _checksum, echo_request

DATA = 148  # one small packet as WireGuard counts it


def feed(watch: TrafficWatch, samples: list[tuple[float, int, int]]) -> list[bool]:
    return [watch.observe(rx, tx, now) for now, rx, tx in samples]


def test_sending_with_nothing_coming_back_is_a_stall_reported_once() -> None:
    watch = TrafficWatch(stall_after=2.0)
    results = feed(
        watch,
        [
            (0, 100, 100),
            (1, 100, 100 + DATA),
            (2, 100, 100 + 2 * DATA),
            (3, 100, 100 + 3 * DATA),
            (4, 100, 100 + 4 * DATA),
        ],
    )
    assert results == [False, False, True, False, False]
    assert watch.stalled


def test_traffic_coming_back_clears_the_stall() -> None:
    watch = TrafficWatch(stall_after=2.0)
    feed(watch, [(0, 0, 0), (1, 0, DATA), (2, 0, 2 * DATA)])
    assert watch.stalled
    assert watch.observe(DATA, 3 * DATA, 3) is False
    assert not watch.stalled


def test_an_idle_tunnel_with_keepalives_only_is_not_a_stall() -> None:
    watch = TrafficWatch(stall_after=2.0)
    # both sides send a keepalive every 25 s, not in step with each other
    samples = [
        (t, ((t + 12) // 25) * KEEPALIVE_BYTES, (t // 25) * KEEPALIVE_BYTES)
        for t in range(0, 200, 1)
    ]
    assert not any(feed(watch, samples))
    assert not watch.busy


def test_counters_reset_by_a_recreated_device_start_over() -> None:
    watch = TrafficWatch(stall_after=2.0)
    feed(watch, [(0, 500, 500), (1, 500, 500 + DATA)])
    assert watch.observe(0, 0, 5) is False  # new device: counters went back to zero
    assert watch.observe(0, DATA, 6) is False


def test_busy_means_data_was_sent_since_the_last_sample() -> None:
    watch = TrafficWatch()
    watch.observe(0, 0, 0)
    watch.observe(0, KEEPALIVE_BYTES, 1)
    assert not watch.busy
    watch.observe(0, KEEPALIVE_BYTES + DATA, 2)
    assert watch.busy


@pytest.mark.parametrize("v6", [False, True])
def test_echo_request_layout(v6: bool) -> None:
    packet = echo_request(0x1234, 7, b"payload", v6=v6)
    kind, code, checksum, ident, seq = struct.unpack_from("!BBHHH", packet)
    assert (kind, code, ident, seq) == ((128 if v6 else 8), 0, 0x1234, 7)
    assert packet[8:] == b"payload"
    if v6:
        assert checksum == 0  # the kernel fills ICMPv6 checksums on raw sockets
    else:
        assert _checksum(packet) == 0  # a correct checksum sums to zero
