"""When each thing happens next: every deadline and backoff of one device, and nothing else.

Each scheduling rule of docs/architecture.md ("Scheduling rules") is one method here; the doc
names it. No I/O and no asyncio: the worker passes ``now`` (its clock's monotonic time) and
asks what is due (``*_due``) and how long it may sleep (``next_deadline``), in the manner of
a sans-IO protocol's ``get_timer``/``handle_timer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

RECENT_HANDSHAKE = 180.0  # s: WireGuard drops sessions older than this (REJECT_AFTER_TIME)
HANDSHAKE_GRACE = 15.0  # s after setting an endpoint before we say the tunnel did not form
WARM_INTERVAL = 25.0  # s: re-STUN at most this often while a peer lacks a handshake
FETCH_BACKOFF_START = 1.0  # s
WATCH_RECHECK = 0.25  # s: a re-read after a watch's news found nothing is tried again this soon
PUBLISH_BACKOFF_CAP = 60.0  # s
DEVICE_BACKOFF_START = 0.25  # s, for a missing device or failed discovery
DEVICE_BACKOFF_CAP = 30.0
POLL_FAST = 1.0  # s: device poll while a handshake is awaited
POLL_BUSY = 1.0  # s: device poll while data flows, to see a broken path quickly
POLL_SLOW = 5.0  # s: device poll otherwise: handshake age, rx/tx
PEER_WAIT = 30.0  # s after a device appears during which peers missing from it are polled for
PUNCH_DELAY = 0.3  # s between publishing a moved endpoint and kicking WireGuard towards peers
COLLISION_CHECK = 0.5  # s after a first endpoint before the lower key re-creates a silent peer
BAD_FAMILY_TTL = 120.0  # s a family whose path broke is avoided by prefer_* peers
PING_RESOLVE_TTL = 300.0  # s a ping target's host name lookup is used before a new one
PING_RESOLVE_RETRY = 30.0  # s after a failed lookup before the next
WATCH_BACKOFF = (1.0, 60.0)  # s: re-establishing a store watch that failed


class Backoff:
    """Doubling delay between ``start`` and ``cap``."""

    def __init__(self, start: float, cap: float) -> None:
        self.start, self.cap, self._next = start, cap, start

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.start


@dataclass
class PeerTimes:
    """One peer's deadlines (monotonic seconds; None: not scheduled)."""

    fetch_backoff: Backoff
    publish_backoff: Backoff = field(
        default_factory=lambda: Backoff(FETCH_BACKOFF_START, PUBLISH_BACKOFF_CAP)
    )
    next_fetch: float | None = None  # a re-fetch outside full cycles
    next_publish: float | None = None  # a publish retry after a failure
    applied_at: float | None = None  # we last set its endpoint (or its tunnel went stale)
    next_ping: float | None = None  # the next ICMP check (ping settings)
    next_collision_check: float | None = None  # re-create it then if still silent
    watch_woke_at: float = float("-inf")  # the store's watch last said the peer published
    bad_families: dict[str, float] = field(default_factory=dict)  # family -> avoid until
    resolve_after: float = float("-inf")  # the ping target's name is looked up again from here


def handshake_recent(latest_handshake: float, wall_now: float) -> bool:
    """Rule: a handshake older than 180 s (REJECT_AFTER_TIME) counts as stale."""
    return latest_handshake > 0 and wall_now - latest_handshake < RECENT_HANDSHAKE


def cycle_interval(refresh_interval: float, republish_intervals: Iterable[float | None]) -> float:
    """Rule: full cycles every ``refresh_interval``, shorter when a store's records expire."""
    interval = refresh_interval
    for republish in republish_intervals:
        if republish:
            interval = min(interval, float(republish))
    return interval


class Schedule:
    """One device's deadlines: full cycles, polls, warm-ups, and each peer's re-fetch,
    publish retry, grace, ping and avoided families."""

    def __init__(self) -> None:
        self.next_full = 0.0  # a full cycle at start
        self.next_poll = float("inf")
        self.adopted_at = float("-inf")  # the device (last) appeared
        self.last_discovery = 0.0
        self.device_backoff = Backoff(DEVICE_BACKOFF_START, DEVICE_BACKOFF_CAP)
        self.rediscover_requested = False
        self.peers: dict[bytes, PeerTimes] = {}

    # ---- peers come and go -------------------------------------------------------------

    def add_peer(self, key: bytes, refresh_interval: float) -> PeerTimes:
        """A peer to schedule; its re-fetch backoff is capped at the (current) refresh
        interval."""
        cap = max(refresh_interval, FETCH_BACKOFF_START)
        times = self.peers[key] = PeerTimes(Backoff(FETCH_BACKOFF_START, cap))
        return times

    def remove_peer(self, key: bytes) -> None:
        self.peers.pop(key, None)

    def _of(self, key: bytes) -> PeerTimes:
        """A peer's times; for a peer removed meanwhile (an await in between) a detached set,
        so what is written for it is dropped."""
        times = self.peers.get(key)
        return times if times is not None else PeerTimes(Backoff(FETCH_BACKOFF_START, 1.0))

    # ---- full cycles -------------------------------------------------------------------

    def full_due(self, now: float) -> bool:
        return now >= self.next_full

    def cycle_done(self, now: float, interval: float, *, discovered: bool) -> float:
        """Rule: the next full cycle after ``interval`` (``cycle_interval``); after a failed
        discovery sooner, with the device backoff. Returns the delay."""
        if discovered:
            self.device_backoff.reset()
        else:
            interval = min(interval, self.device_backoff.next())
        self.next_full = now + interval
        return interval

    def retry_device(self, now: float) -> None:
        """Rule: a missing device, or a failing step, is retried with backoff (0.25 s, 0.5 s
        ... 30 s): a failure never stops the worker."""
        self.next_full = now + self.device_backoff.next()

    def link_appeared(self) -> None:
        """Rule: a link appearing resets the retry delay for a missing device (it grew while
        the link was gone; wireguard-go's control socket comes up just after its link)."""
        self.device_backoff.reset()

    # ---- keeping the mapping warm, re-discovery ----------------------------------------

    def discovered(self, now: float) -> None:
        self.last_discovery = now

    def request_rediscover(self) -> None:
        self.rediscover_requested = True

    def rediscover_due(self, now: float, *, warming: bool) -> bool:
        """Rule: while a peer lacks a handshake, STUN at most every 25 s (``warming``);
        a network change or a broken path asks for it at once. Consumes the request."""
        due = self.rediscover_requested or (warming and now >= self.last_discovery + WARM_INTERVAL)
        self.rediscover_requested = False
        return due

    def kick_at(self, published_at: float) -> float:
        """Rule: after our own endpoint moved, kicks wait 0.3 s after the publish, so the
        peer can open its NAT towards the new endpoint first."""
        return published_at + PUNCH_DELAY

    def kicked_with_apply(self, key: bytes, now: float) -> bool:
        """A peer whose endpoint was set within the kick delay was kicked by that."""
        applied = self._of(key).applied_at
        return applied is not None and now - applied < PUNCH_DELAY

    # ---- polling WireGuard -------------------------------------------------------------

    def poll_due(self, now: float) -> bool:
        return now >= self.next_poll

    def poll_soon(self, now: float) -> None:
        """After a fetch or apply: look at WireGuard within a second."""
        self.next_poll = min(self.next_poll, now + POLL_FAST)

    def polled(self, now: float, *, awaiting: bool, busy: bool) -> None:
        """Rule: every second while a handshake is awaited (or peers are expected on a new
        device) or data flows, every 5 s otherwise."""
        self.next_poll = now + (POLL_FAST if awaiting else POLL_BUSY if busy else POLL_SLOW)

    def poll_failed(self, now: float) -> None:
        """The device could not be read at a poll: poll slowly, retry the device with backoff."""
        self.next_poll = now + POLL_SLOW
        self.next_full = min(self.next_full, now + self.device_backoff.next())

    def adopted(self, now: float) -> None:
        self.adopted_at = now

    def expecting_peers(self, now: float) -> bool:
        """Rule: for 30 s after a device appears, configured peers missing from it are looked
        for every second (whoever creates an interface adds its peers a moment later)."""
        return now - self.adopted_at < PEER_WAIT

    # ---- one peer: fetch, publish, apply -----------------------------------------------

    def fetch_started(self, key: bytes) -> None:
        self._of(key).next_fetch = None

    def refetch_later(self, key: bytes, now: float, *, news: bool = False) -> float:
        """Rule: a peer without a record, or with an endpoint applied but no handshake yet (or
        whose fetch failed), is re-fetched after 1 s, 2 s, 4 s ... capped at
        ``refresh_interval``. A re-read woken by the store's watch (``news``) that found no
        record yet is tried again after 0.25 s instead, without a backoff step: the store
        was still spreading the value the watch saw. Returns the deadline."""
        times = self._of(key)
        times.next_fetch = now + (WATCH_RECHECK if news else times.fetch_backoff.next())
        return times.next_fetch

    def refetch_now(self, key: bytes, now: float) -> None:
        """A prefer_* peer may try its other family at once."""
        self._of(key).next_fetch = now

    def watch_woke(self, key: bytes, now: float) -> None:
        """The store's watch says the peer published: read it at once."""
        times = self._of(key)
        times.next_fetch = times.watch_woke_at = now

    def reread_if_woken(self, key: bytes, began: float, now: float) -> bool:
        """Rule: a watch wake that came while the peer was being read (since ``began``) makes
        it read again at once: that read may predate the value."""
        times = self._of(key)
        if times.watch_woke_at < began:
            return False
        times.next_fetch = now
        return True

    def handshake_seen(self, key: bytes) -> None:
        """The tunnel is up: no re-fetch until the next full cycle; backoff starts over."""
        times = self._of(key)
        times.fetch_backoff.reset()
        times.next_fetch = None

    def fetch_due(self, now: float) -> set[bytes]:
        return {
            k for k, t in self.peers.items() if t.next_fetch is not None and t.next_fetch <= now
        }

    def publish_started(self, key: bytes) -> None:
        self._of(key).next_publish = None

    def publish_failed(self, key: bytes, now: float) -> float:
        """Rule: a failed publish is retried after 1 s, 2 s, 4 s ... (capped at 60 s)."""
        times = self._of(key)
        times.next_publish = now + times.publish_backoff.next()
        return times.next_publish

    def published(self, key: bytes) -> None:
        self._of(key).publish_backoff.reset()

    def publish_due(self, now: float) -> set[bytes]:
        return {
            k for k, t in self.peers.items() if t.next_publish is not None and t.next_publish <= now
        }

    def applied(self, key: bytes, now: float) -> None:
        """An endpoint was set: its handshake grace starts."""
        self._of(key).applied_at = now

    def grace_over(self, key: bytes, now: float) -> bool | None:
        """Rule: 15 s after applying an endpoint without a handshake the peer is failed.
        None when no endpoint was applied."""
        applied = self._of(key).applied_at
        return None if applied is None else now - applied >= HANDSHAKE_GRACE

    def collision_check(self, key: bytes, now: float) -> None:
        """Rule: 0.5 s after a silent peer was re-created with its first endpoint, check it
        again (the lower key's side only: ``decisions.checks_collision``)."""
        self._of(key).next_collision_check = now + COLLISION_CHECK

    def collision_due(self, now: float) -> set[bytes]:
        return {
            k
            for k, t in self.peers.items()
            if t.next_collision_check is not None and t.next_collision_check <= now
        }

    def collision_checked(self, key: bytes) -> None:
        self._of(key).next_collision_check = None

    def settled(self, key: bytes, now: float) -> bool:
        """The endpoint applied last (if any) has had its handshake grace."""
        return self.grace_over(key, now) is not False

    def went_stale(self, key: bytes, now: float) -> None:
        """Rule: a connected peer whose handshake went stale is re-fetched at once, and its
        endpoint gets a new grace."""
        times = self._of(key)
        times.applied_at = now
        times.next_fetch = now

    def path_broken(self, key: bytes, now: float, family: str | None) -> None:
        """Rule: a path where we send and nothing comes back (2 s, ``health.TrafficWatch``)
        or pings go unanswered: re-fetch at once with backoff from the start, a new grace,
        and ``family`` avoided (``endpoint_failed``). The caller re-discovers too."""
        times = self._of(key)
        self.endpoint_failed(key, now, family)
        times.applied_at = now
        times.fetch_backoff.reset()
        times.next_fetch = now

    def endpoint_failed(self, key: bytes, now: float, family: str | None) -> None:
        """Rule: a family whose path broke is avoided by prefer_* peers for 120 s."""
        if family:
            self._of(key).bad_families[family] = now + BAD_FAMILY_TTL

    def avoided_families(self, key: bytes, now: float) -> frozenset[str]:
        times = self._of(key)
        return frozenset(f for f, until in times.bad_families.items() if until > now)

    # ---- pings -------------------------------------------------------------------------

    def ping_later(self, key: bytes, now: float, interval: float | None) -> None:
        """Rule: a peer with ping settings is pinged every (its own, else the global)
        interval; None: not pinged."""
        self._of(key).next_ping = None if interval is None else now + interval

    def ping_started(self, key: bytes) -> None:
        """A check is in flight (one per peer): the next is scheduled when it ends."""
        self._of(key).next_ping = None

    def ping_due(self, now: float) -> set[bytes]:
        return {k for k, t in self.peers.items() if t.next_ping is not None and t.next_ping <= now}

    def resolve_due(self, key: bytes, now: float) -> bool:
        """Rule: a ping target's host name is looked up again after 300 s (30 s after a
        failed lookup)."""
        return now >= self._of(key).resolve_after

    def resolve_started(self, key: bytes, now: float) -> None:
        self._of(key).resolve_after = now + PING_RESOLVE_RETRY

    def resolved(self, key: bytes, now: float) -> None:
        self._of(key).resolve_after = now + PING_RESOLVE_TTL

    def resolve_again(self, key: bytes) -> None:
        """The ping target may have changed (reload)."""
        self._of(key).resolve_after = float("-inf")

    # ---- the worker's timer ------------------------------------------------------------

    def next_deadline(self, *, warming: bool) -> float:
        """The earliest moment something is due (monotonic); the worker sleeps until then or
        until a request wakes it."""
        deadlines = [self.next_full, self.next_poll]
        if warming:
            deadlines.append(self.last_discovery + WARM_INTERVAL)
        for times in self.peers.values():
            deadlines += [
                t
                for t in (
                    times.next_fetch,
                    times.next_publish,
                    times.next_ping,
                    times.next_collision_check,
                )
                if t is not None
            ]
        if self.rediscover_requested:
            deadlines.append(0.0)
        return min(deadlines)
