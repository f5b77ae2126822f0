"""The engine's choices as pure functions of what it knows: no I/O, no clock of their own.

Which record wins among a store's candidates, which of its endpoints a peer gets, what applying
it means for WireGuard (keep, set, re-create), what a device poll says about a peer, and why a
tunnel did not form. The rules are in docs/architecture.md ("Scheduling rules").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stunmeshd import crypto
from stunmeshd.discovery import Discovery
from stunmeshd.errors import RecordError
from stunmeshd.model import PeerState
from stunmeshd.wireguard.base import PeerInfo

from .schedule import HANDSHAKE_GRACE
from .schedule import handshake_recent as _recent

KICK_KEEPALIVE = 25  # s: persistent keepalive set on peers that have none (NAT needs it)


def handshake_recent(peer: PeerInfo, now: float) -> bool:
    """WireGuard's session with ``peer`` is alive (``now``: Unix time, the engine's clock)."""
    return _recent(peer.latest_handshake, now)


def tunnel_live(peer: PeerInfo, *, stalled: bool, now: float) -> bool:
    """A recent handshake and no traffic stall (``health.TrafficWatch.stalled``)."""
    return handshake_recent(peer, now) and not stalled


def choose_endpoint(
    record: crypto.EndpointRecord, protocol: str, avoid: frozenset[str] = frozenset()
) -> str:
    """Pick the record's endpoint for a peer's ``protocol``.

    The ``prefer_*`` forms fall back to the other family when the record lacks the preferred
    one, or when the preferred one's path was just found broken (``avoid``).
    """
    order = {
        "ipv4": ("ipv4",),
        "ipv6": ("ipv6",),
        "prefer_ipv4": ("ipv4", "ipv6"),
        "prefer_ipv6": ("ipv6", "ipv4"),
    }.get(protocol, ("ipv4",))
    usable = [f for f in order if getattr(record, f)]
    if len(usable) > 1:
        usable = [f for f in usable if f not in avoid] or usable
    for family in usable:
        endpoint = getattr(record, family)
        if endpoint:
            return str(endpoint)
    raise RecordError(
        f"peer asks for {protocol} but its record has no {' or '.join(order)} endpoint"
    )


def endpoint_family(endpoint: str) -> str:
    return "ipv6" if endpoint.startswith("[") else "ipv4"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A store value that opened: its record, the endpoint for the peer, the guard's verdict."""

    record: crypto.EndpointRecord
    endpoint: str
    value: str
    in_order: bool


def pick_record(
    candidates: list[Candidate], *, current: str, live: bool, settled: bool
) -> Candidate | None:
    """Rule: among a store's candidates (newest first) the guard's in-order records win (the
    newest ``ts``); an out-of-order one (a peer back on stunmesh-go, or a replay) is taken
    when none is in order, or when the in-order one names the endpoint WireGuard has
    (``current``) that had its grace (``settled``) and no live tunnel."""
    best: Candidate | None = None
    fallback: Candidate | None = None
    for cand in candidates:
        if not cand.in_order:
            fallback = fallback or cand
        elif best is None or (cand.record.ts or -1) > (best.record.ts or -1):
            best = cand
    if fallback is not None and (
        best is None
        or (not live and settled and best.endpoint == current and fallback.endpoint != current)
    ):
        return fallback
    return best


class Apply(enum.Enum):
    KEEP = "keep"  # WireGuard has this endpoint already
    ROAMED = "roamed"  # WireGuard roamed to a newer endpoint: the record does not overwrite it
    SET = "set"  # set the endpoint (and kick)
    RECREATE = "recreate"  # re-create the peer with it: WireGuard would hold its handshake back


def apply_action(current: PeerInfo | None, endpoint: str, ts: int | None, *, live: bool) -> Apply:
    """Rule: what applying ``endpoint`` (from a record stamped ``ts`` ms) to the peer WireGuard
    holds (``current``; ``live``: recent handshake, no stall) means.

    An endpoint WireGuard roamed to (a live session from elsewhere) is not overwritten by an
    older record. A peer that never handshaked and has no endpoint is re-created: WireGuard
    holds a handshake back for 5 s after any attempt, a new peer is not held back.
    """
    if current is not None and current.endpoint == endpoint:
        return Apply.KEEP
    if (
        current is not None
        and live
        and current.endpoint
        and (ts is None or ts / 1000 < current.latest_handshake)
    ):
        return Apply.ROAMED
    if current is not None and not current.latest_handshake and not current.endpoint:
        return Apply.RECREATE
    return Apply.SET


def checks_collision(own_key: bytes, peer_key: bytes) -> bool:
    """Rule: after re-creating a silent peer with its first endpoint, only the side with the
    lower public key checks 0.5 s later whether the two first initiations collided (each
    WireGuard answered the other's and refused the answer to its own): one fresh initiation
    then completes, and the two never collide again."""
    return own_key < peer_key


def still_silent(current: PeerInfo | None) -> bool:
    """WireGuard has an endpoint for the peer and never a handshake."""
    return current is not None and not current.latest_handshake and bool(current.endpoint)


def kick_keepalive(current: PeerInfo | None) -> int:
    """Rule: every endpoint change kicks WireGuard (persistent keepalive 0 -> N): the peer's
    own keepalive, else 25 s (the NAT needs one)."""
    if current is not None and current.persistent_keepalive:
        return current.persistent_keepalive
    return KICK_KEEPALIVE


class Link(enum.Enum):
    UP = "up"  # a recent handshake and no stall: connected
    STALE = "stale"  # was connected, no longer: re-fetch at once
    UNCHANGED = "unchanged"


def poll_verdict(state: PeerState, *, live: bool) -> Link:
    """Rule: what a device poll means for a peer (``live``: a handshake within 180 s and no
    traffic stall)."""
    if live:
        return Link.UP
    return Link.STALE if state == PeerState.CONNECTED else Link.UNCHANGED


def no_handshake_reason(endpoint: str, discovery: Discovery) -> str:
    """Why a tunnel did not form within the grace after setting ``endpoint``."""
    mapping = discovery.nat_mapping
    reason = f"no handshake {HANDSHAKE_GRACE:.0f} s after setting endpoint {endpoint}"
    family = endpoint_family(endpoint)
    if family in discovery.errors:
        return f"{reason}: this host has no working {family} path ({discovery.errors[family]})"
    if mapping.dependent:
        return (
            f"{reason}: this host's NAT mapping is {mapping} (symmetric), so the "
            "peer cannot reach the port STUN discovered; the tunnel cannot form by "
            "STUN alone"
        )
    return f"{reason}: the peer may be behind a symmetric NAT or a firewall, or not running"
