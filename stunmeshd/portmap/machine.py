"""When to probe, map, renew and delete: the port-mapping state machine, without I/O.

In the style of aioquic: the caller feeds events with the current time (``now``, any
monotonic clock) and performs the :data:`Action` s it takes from :meth:`next_action`;
:meth:`get_timer` says when to call :meth:`handle_timer` next. So every rule (renew at half
the lifetime, re-map after a failed renewal, back off when no router answers) is tested with a
fake clock, and the protocols' I/O lives in one place (``client.py``).

Each action carries a sequence number; a result for an action that an event has overtaken
(the network changed while a request was in flight) is ignored.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import StrEnum


class Protocol(StrEnum):
    PCP = "pcp"
    NATPMP = "natpmp"
    UPNP = "upnp"


ALL_PROTOCOLS = (Protocol.PCP, Protocol.NATPMP, Protocol.UPNP)
MODES = ("auto", "off", *(p.value for p in ALL_PROTOCOLS))
DEFAULT_LIFETIME = 7200  # s we ask for (RFC 6886 §3.3 recommends two hours)
MAP_ATTEMPTS = 3  # mapping requests to a router that answered the probe, before re-probing
RETRY_START = 1.0  # s between those attempts (doubles)
PROBE_BACKOFF_START = 30.0  # s before probing again when no router answered (doubles)
PROBE_BACKOFF_CAP = 600.0
# A router that lies: it grants the mapping, nothing arrives through it. Health's reports on a
# mapping granted less than this long ago are not held against it (the peers have not yet
# fetched the record and tried: twice the engine's 15 s handshake grace). A mapping no peer has
# handshaken through that fails once is mapped again; failing again, it is judged not forwarding.
NOT_FORWARDING_GRACE = 30.0
DISTRUST_START = 600.0  # s without mapping after that verdict (doubles; a gateway change resets)
DISTRUST_CAP = 3600.0


class Phase(StrEnum):
    DISABLED = "disabled"  # port_mapping: off
    IDLE = "idle"  # nothing to map (no listen port)
    PROBING = "probing"
    MAPPING = "mapping"
    MAPPED = "mapped"
    RENEWING = "renewing"
    WAITING = "waiting"  # backing off before the next probe or attempt
    DISTRUSTED = "not-forwarding"  # the router's mapping carried nothing: not mapping for a while
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Mapping:
    protocol: Protocol
    external_ip: str
    external_port: int
    internal_port: int
    lifetime: int
    obtained: float

    @property
    def expires(self) -> float:
        return self.obtained + self.lifetime

    @property
    def renew_at(self) -> float:
        return self.obtained + self.lifetime / 2

    @property
    def endpoint(self) -> str:
        return f"{self.external_ip}:{self.external_port}"


@dataclass(frozen=True, slots=True)
class Probe:
    seq: int
    protocols: tuple[Protocol, ...]


@dataclass(frozen=True, slots=True)
class Map:
    seq: int
    protocol: Protocol
    internal_port: int
    lifetime: int
    external_port: int  # a suggestion: the port we had, so renewals keep it


@dataclass(frozen=True, slots=True)
class Unmap:
    seq: int
    protocol: Protocol
    internal_port: int
    external_port: int


Action = Probe | Map | Unmap


@dataclass(frozen=True, slots=True)
class Status:
    """What the bus shows: the mapping, or why there is none."""

    phase: Phase
    mapping: Mapping | None
    reason: str


class PortMapMachine:
    """One interface's mapping of WireGuard's UDP port (and only that port)."""

    def __init__(self, *, mode: str = "auto", lifetime: int = DEFAULT_LIFETIME, now: float) -> None:
        if mode not in MODES:
            raise ValueError(f"port_mapping must be one of {', '.join(MODES)}")
        if lifetime < 2:
            raise ValueError("a mapping lifetime is at least 2 s")
        self.mode = mode
        self.lifetime = lifetime
        self.protocols = (
            ALL_PROTOCOLS if mode == "auto" else tuple(p for p in ALL_PROTOCOLS if p.value == mode)
        )
        self.internal_port: int | None = None
        self.mapping: Mapping | None = None
        self.protocol: Protocol | None = None  # the one that answered the probe
        self.phase = Phase.DISABLED if mode == "off" else Phase.IDLE
        self.reason = "port mapping is off" if mode == "off" else "WireGuard has no listen port"
        self._actions: collections.deque[Action] = collections.deque()
        self._seq = 0
        self._pending: int | None = None  # seq of the action whose result we wait for
        self._timer: float | None = None
        self._attempts = 0
        self._probe_backoff = PROBE_BACKOFF_START
        self._retry_map = False
        self._suspect: str | None = None  # an endpoint that failed once, never carried traffic
        self._granted_at = 0.0  # when the router last granted a mapping afresh (not a renewal)
        self._distrust = DISTRUST_START

    # --- what the caller reads ----------------------------------------------------------

    @property
    def status(self) -> Status:
        return Status(self.phase, self.mapping, self.reason)

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def next_action_pending(self) -> bool:
        return bool(self._actions)

    def get_timer(self) -> float | None:
        return self._timer

    # --- events -------------------------------------------------------------------------

    def set_port(self, port: int | None, now: float) -> None:
        """WireGuard's listen port, first known or changed: the old mapping goes, a new comes."""
        if self.phase is Phase.STOPPED or port == self.internal_port:
            return
        if self.phase is Phase.DISABLED:
            self.internal_port = port
            return
        self._unmap_current()
        self.internal_port = port
        if port is None:
            self._idle("WireGuard has no listen port")
        else:
            self._probe("looking for a port-mapping router")

    def network_changed(self, why: str, now: float, *, gateway_moved: bool = True) -> None:
        """Gateway or external address changed: map again. A gateway that moved also ends a
        "not forwarding" verdict (a new router); anything else does not."""
        if self.phase in (Phase.DISABLED, Phase.STOPPED, Phase.IDLE):
            return
        if gateway_moved:
            self._suspect = None
            self._distrust = DISTRUST_START
        elif self.phase is Phase.DISTRUSTED:
            return
        self._remap(why)

    def path_failed(self, why: str, now: float, *, carried: bool) -> float | None:
        """Health says a path through the published mapping failed (a stall, pings, or no
        handshake within the grace). ``carried``: a peer has handshaken since we first held
        this mapped endpoint.

        A mapping that carried traffic was probably forgotten by the router: map again at
        once. For one that never did, reports within :data:`NOT_FORWARDING_GRACE` of the
        router granting it are ignored (the time from which they count is returned, so the
        caller can ask again then if nothing has arrived meanwhile); then it is mapped again
        once (the router may have lost it); when the router grants the same endpoint again
        and it still carries nothing, the router lies: the mapping is deleted at the router
        and not asked for again for :data:`DISTRUST_START` (doubling to :data:`DISTRUST_CAP`).
        """
        m = self.mapping
        if m is None or self.phase not in (Phase.MAPPED, Phase.RENEWING):
            return None
        if carried:
            self._suspect = None
            self._distrust = DISTRUST_START
            self._remap(why)
        elif now - self._granted_at < NOT_FORWARDING_GRACE:
            return self._granted_at + NOT_FORWARDING_GRACE
        elif self._suspect != m.endpoint:
            self._suspect = m.endpoint
            self._remap(why)
        else:
            self._not_forwarding(m, now)
        return None

    def peer_moved(self, why: str) -> None:
        """A peer published an endpoint we had not seen: the other side of the test is new.

        A "not forwarding" verdict cannot tell a lying router from a peer that was simply
        away (switched off, asleep); a peer that comes back publishes its new endpoint, so
        that ends the verdict, and a strike against the current mapping is forgotten. The
        wait after a verdict keeps its doubling: a router that does lie is judged again
        within a minute and waits longer each time.
        """
        self._suspect = None
        if self.phase is Phase.DISTRUSTED:
            self._remap(why)

    def _remap(self, why: str) -> None:
        self.mapping = None
        self._probe_backoff = PROBE_BACKOFF_START
        self._probe(f"mapping again: {why}")

    def stop(self, now: float) -> None:
        """Delete the mapping (on stop, interface removal); nothing happens after this."""
        if self.phase is Phase.STOPPED:
            return
        self._unmap_current()
        self.phase, self.reason, self._timer, self._pending = Phase.STOPPED, "stopped", None, None

    def probe_done(self, seq: int, protocol: Protocol | None, now: float) -> None:
        if seq != self._pending or self.phase is not Phase.PROBING:
            return
        self._pending = None
        if protocol is None:
            names = "/".join(p.value for p in self.protocols)
            self._wait(now + self._probe_backoff, f"no router answered {names}")
            self._probe_backoff = min(self._probe_backoff * 2, PROBE_BACKOFF_CAP)
            return
        self.protocol = protocol
        self._attempts = 0
        self._map(Phase.MAPPING, f"mapping with {protocol.value}")

    def mapped(
        self, seq: int, external_ip: str, external_port: int, lifetime: int, now: float
    ) -> None:
        if seq != self._pending or self.phase not in (Phase.MAPPING, Phase.RENEWING):
            return
        if self.protocol is None or self.internal_port is None:
            return
        if lifetime <= 0 or not 0 < external_port <= 0xFFFF:
            self.failed(seq, f"{self.protocol.value}: the router granted no usable mapping", now)
            return
        self._pending = None
        self.mapping = Mapping(
            self.protocol, external_ip, external_port, self.internal_port, lifetime, now
        )
        if self.phase is Phase.MAPPING:
            self._granted_at = now
            if self.mapping.endpoint != self._suspect:
                self._suspect = None
        self.phase, self.reason = Phase.MAPPED, ""
        self._attempts = 0
        self._probe_backoff = PROBE_BACKOFF_START
        self._timer = self.mapping.renew_at

    def failed(self, seq: int, reason: str, now: float) -> None:
        """A mapping request (first or renewal) failed: timeout, refusal or a bad answer."""
        if seq != self._pending or self.phase not in (Phase.MAPPING, Phase.RENEWING):
            return
        self._pending = None
        if self.phase is Phase.RENEWING:
            # the router forgot us (restarted?) or went away: look again at once
            self.mapping = None
            self._probe(f"renewal failed ({reason}); mapping again")
            return
        self._attempts += 1
        if self._attempts < MAP_ATTEMPTS:
            self._wait(now + RETRY_START * 2 ** (self._attempts - 1), reason, retry_map=True)
            return
        self._wait(now + self._probe_backoff, reason)
        self._probe_backoff = min(self._probe_backoff * 2, PROBE_BACKOFF_CAP)

    def handle_timer(self, now: float) -> None:
        if self._timer is None or now < self._timer:
            return
        self._timer = None
        if self.phase is Phase.MAPPED and self.mapping is not None:
            self._map(Phase.RENEWING, "")
        elif self.phase is Phase.DISTRUSTED:
            self._probe("asking the router again after its mapping carried nothing")
        elif self.phase is Phase.WAITING:
            if self._retry_map and self.protocol is not None:
                self._map(Phase.MAPPING, self.reason)
            else:
                self._probe(self.reason)

    # --- transitions --------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _idle(self, reason: str) -> None:
        self.phase, self.reason, self._timer, self._pending = Phase.IDLE, reason, None, None

    def _probe(self, reason: str) -> None:
        self._timer = None
        self.phase, self.reason = Phase.PROBING, reason
        self.protocol = None
        seq = self._next_seq()
        self._pending = seq
        self._actions.append(Probe(seq, self.protocols))

    def _map(self, phase: Phase, reason: str) -> None:
        assert self.protocol is not None and self.internal_port is not None
        self._timer = None
        self.phase = phase
        if reason:
            self.reason = reason
        seq = self._next_seq()
        self._pending = seq
        suggested = self.mapping.external_port if self.mapping else self.internal_port
        self._actions.append(Map(seq, self.protocol, self.internal_port, self.lifetime, suggested))

    def _wait(self, until: float, reason: str, *, retry_map: bool = False) -> None:
        self.phase, self.reason, self._timer = Phase.WAITING, reason, until
        self._retry_map = retry_map

    def _not_forwarding(self, m: Mapping, now: float) -> None:
        wait = self._distrust
        self._distrust = min(self._distrust * 2, DISTRUST_CAP)
        self._unmap_current()
        self.phase, self._timer, self._pending = Phase.DISTRUSTED, now + wait, None
        self.reason = (
            f"router mapped {m.endpoint} ({m.protocol.value}) but nothing arrived through it; "
            f"not mapping for {wait / 60:.0f} min"
        )

    def _unmap_current(self) -> None:
        if self.mapping is not None:
            m = self.mapping
            self._actions.append(
                Unmap(self._next_seq(), m.protocol, m.internal_port, m.external_port)
            )
        self.mapping = None
