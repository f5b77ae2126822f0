"""The engine's pure decisions: which record wins, what applying an endpoint means, what a poll
says, why a tunnel did not form (docs/architecture.md, "Scheduling rules")."""

from __future__ import annotations

from dataclasses import replace

from stunmeshd.crypto import EndpointRecord
from stunmeshd.discovery import Discovery
from stunmeshd.engine.clock import FakeClock
from stunmeshd.engine.decisions import (
    Apply,
    Candidate,
    Link,
    apply_action,
    checks_collision,
    handshake_recent,
    kick_keepalive,
    no_handshake_reason,
    pick_record,
    poll_verdict,
    still_silent,
    tunnel_live,
)
from stunmeshd.model import NatMapping, PeerState
from stunmeshd.wireguard.base import PeerInfo

OLD, NEW, ROAMED = "203.0.113.7:51820", "203.0.113.8:51820", "198.51.100.9:40000"
CLOCK = FakeClock()
NOW = CLOCK.wall()


def cand(endpoint: str, ts: int | None, *, in_order: bool = True) -> Candidate:
    return Candidate(EndpointRecord(ipv4=endpoint, ts=ts), endpoint, f"v{endpoint}{ts}", in_order)


def held(endpoint: str | None, handshake: float = 0.0, keepalive: int = 0) -> PeerInfo:
    return PeerInfo(
        public_key=b"\1" * 32,
        endpoint=endpoint,
        latest_handshake=handshake,
        rx_bytes=0,
        tx_bytes=0,
        persistent_keepalive=keepalive,
    )


def test_among_candidates_the_newest_in_order_record_wins() -> None:
    got = pick_record(
        [cand(OLD, 1), cand(NEW, 3), cand(ROAMED, None, in_order=False)],
        current="",
        live=False,
        settled=True,
    )
    assert got is not None and got.endpoint == NEW


def test_an_out_of_order_record_is_taken_when_none_is_in_order() -> None:
    first, second = cand(NEW, None, in_order=False), cand(OLD, None, in_order=False)
    assert pick_record([first, second], current="", live=False, settled=True) == first
    assert pick_record([], current="", live=False, settled=True) is None


def test_an_out_of_order_record_wins_over_an_in_order_one_whose_endpoint_had_its_grace() -> None:
    ordered, back = cand(OLD, 5), cand(NEW, None, in_order=False)
    args = {"current": OLD}
    assert pick_record([ordered, back], live=False, settled=True, **args) == back
    # not while the tunnel lives, not within the grace, not when it names another endpoint
    assert pick_record([ordered, back], live=True, settled=True, **args) == ordered
    assert pick_record([ordered, back], live=False, settled=False, **args) == ordered
    assert pick_record([ordered, back], live=False, settled=True, current=NEW) == ordered


def test_an_endpoint_wireguard_roamed_to_is_not_overwritten_by_an_older_record() -> None:
    roamed = held(ROAMED, handshake=NOW - 10)
    older_ms = int((NOW - 60) * 1000)
    assert apply_action(roamed, NEW, older_ms, live=True) == Apply.ROAMED
    assert apply_action(roamed, NEW, None, live=True) == Apply.ROAMED  # stunmesh-go: no ts
    # a newer record, or a dead session, moves it
    assert apply_action(roamed, NEW, int(NOW * 1000), live=True) == Apply.SET
    assert apply_action(roamed, NEW, older_ms, live=False) == Apply.SET


def test_an_endpoint_wireguard_has_already_is_kept() -> None:
    assert apply_action(held(NEW, NOW - 10), NEW, None, live=True) == Apply.KEEP
    assert apply_action(held(NEW), NEW, None, live=False) == Apply.KEEP


def test_a_peer_that_never_handshaked_and_had_no_endpoint_is_recreated() -> None:
    assert apply_action(held(None), NEW, 1, live=False) == Apply.RECREATE
    assert apply_action(held(OLD), NEW, 1, live=False) == Apply.SET  # had an endpoint
    assert apply_action(held(None, NOW - 500), NEW, 1, live=False) == Apply.SET  # handshaked
    assert apply_action(None, NEW, 1, live=False) == Apply.SET  # not read yet


def test_every_endpoint_change_kicks_with_the_peers_keepalive_or_25s() -> None:
    assert kick_keepalive(held(OLD, keepalive=10)) == 10
    assert kick_keepalive(held(OLD)) == 25
    assert kick_keepalive(None) == 25


def test_a_poll_marks_a_live_peer_connected_and_a_connected_one_gone_stale() -> None:
    fresh = held(OLD, NOW - 179)
    stale = replace(fresh, latest_handshake=NOW - 181)
    assert handshake_recent(fresh, NOW) and not handshake_recent(stale, NOW)
    assert tunnel_live(fresh, stalled=False, now=NOW)
    assert not tunnel_live(fresh, stalled=True, now=NOW)  # we send, nothing comes back
    assert not tunnel_live(stale, stalled=False, now=NOW)
    assert poll_verdict(PeerState.APPLIED, live=True) == Link.UP
    assert poll_verdict(PeerState.CONNECTED, live=False) == Link.STALE
    assert poll_verdict(PeerState.APPLIED, live=False) == Link.UNCHANGED
    assert poll_verdict(PeerState.WAITING, live=False) == Link.UNCHANGED


def test_a_failed_peer_says_why_the_tunnel_did_not_form() -> None:
    dependent = Discovery({"ipv4": OLD}, NatMapping.ADDRESS_AND_PORT_DEPENDENT)
    assert "this host's NAT mapping is address-and-port-dependent" in no_handshake_reason(
        NEW, dependent
    )
    no_v6 = Discovery({"ipv4": OLD}, NatMapping.ENDPOINT_INDEPENDENT, {"ipv6": "no route"})
    assert "no working ipv6 path (no route)" in no_handshake_reason("[2001:db8::1]:5", no_v6)
    plain = Discovery({"ipv4": OLD}, NatMapping.ENDPOINT_INDEPENDENT)
    assert no_handshake_reason(NEW, plain).startswith(
        f"no handshake 15 s after setting endpoint {NEW}: the peer may be behind"
    )


def test_only_the_lower_key_rechecks_a_silent_recreated_peer() -> None:
    low, high = b"\1" * 32, b"\2" * 32
    assert checks_collision(low, high)
    assert not checks_collision(high, low)  # the peer's side checks, never both
    assert still_silent(held(NEW))
    assert not still_silent(held(NEW, NOW - 1))  # it handshaked
    assert not still_silent(held(None))  # no endpoint to re-create it with
    assert not still_silent(None)
