"""Every scheduling rule of docs/architecture.md, driven by a fake clock: no root, no sleeping.

One test per rule, named after it; the doc names the Schedule method each one exercises.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stunmeshd import engine
from stunmeshd.engine.clock import FakeClock
from stunmeshd.engine.schedule import Schedule, cycle_interval, handshake_recent
from stunmeshd.health import TrafficWatch

PEER = b"\1" * 32
OTHER = b"\2" * 32
REFRESH = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sched() -> Schedule:
    schedule = Schedule()
    schedule.add_peer(PEER, REFRESH)
    return schedule


def delays(deadlines: list[float], start: float) -> list[float]:
    return [round(d - start, 3) for d in deadlines]


def test_full_cycle_at_start_then_every_refresh_interval(clock: FakeClock, sched: Schedule) -> None:
    assert sched.full_due(clock.monotonic())  # at start
    assert sched.cycle_done(clock.monotonic(), REFRESH, discovered=True) == REFRESH
    clock.advance(REFRESH - 0.1)
    assert not sched.full_due(clock.monotonic())
    clock.advance(0.1)
    assert sched.full_due(clock.monotonic())


def test_full_cycle_interval_is_shortened_by_a_stores_record_lifetime() -> None:
    assert cycle_interval(600.0, [None, 0]) == 600.0
    assert cycle_interval(600.0, [None, 240]) == 240.0  # OpenDHT's records expire
    assert cycle_interval(100.0, [240]) == 100.0


def test_failed_discovery_brings_the_next_full_cycle_forward_with_backoff(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    got = [sched.cycle_done(now, REFRESH, discovered=False) for _ in range(10)]
    assert got == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert sched.cycle_done(now, REFRESH, discovered=True) == REFRESH
    assert sched.cycle_done(now, REFRESH, discovered=False) == 0.25  # backoff starts over


def test_peer_without_record_is_refetched_after_1_2_4_s_capped_at_refresh_interval(
    clock: FakeClock, sched: Schedule
) -> None:
    start = clock.monotonic()
    deadlines = []
    for _ in range(8):
        sched.fetch_started(PEER)
        deadlines.append(sched.refetch_later(PEER, start))
    assert delays(deadlines, start) == [1, 2, 4, 8, 16, 32, 60, 60]
    clock.advance(59.9)
    assert sched.fetch_due(clock.monotonic()) == set()
    clock.advance(0.1)
    assert sched.fetch_due(clock.monotonic()) == {PEER}
    sched.fetch_started(PEER)
    assert sched.fetch_due(clock.monotonic()) == set()


def test_a_handshake_stops_refetching_and_restarts_the_backoff(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    sched.refetch_later(PEER, now)
    sched.refetch_later(PEER, now)
    sched.handshake_seen(PEER)
    clock.advance(3600)
    assert sched.fetch_due(clock.monotonic()) == set()
    assert sched.refetch_later(PEER, now) == now + 1.0


def test_failed_publish_is_retried_after_1_2_4_s(clock: FakeClock, sched: Schedule) -> None:
    start = clock.monotonic()
    deadlines = [sched.publish_failed(PEER, start) for _ in range(8)]
    assert delays(deadlines, start) == [1, 2, 4, 8, 16, 32, 60, 60]
    clock.advance(60)
    assert sched.publish_due(clock.monotonic()) == {PEER}
    sched.publish_started(PEER)
    sched.published(PEER)
    assert sched.publish_due(clock.monotonic()) == set()
    assert sched.publish_failed(PEER, start) == start + 1.0


def test_mapping_is_kept_warm_at_most_every_25s_while_a_peer_lacks_a_handshake(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.cycle_done(clock.monotonic(), REFRESH, discovered=True)
    sched.discovered(clock.monotonic())
    clock.advance(24.9)
    assert not sched.rediscover_due(clock.monotonic(), warming=True)
    clock.advance(0.1)
    assert not sched.rediscover_due(clock.monotonic(), warming=False)  # all connected
    assert sched.rediscover_due(clock.monotonic(), warming=True)
    assert sched.next_deadline(warming=True) == sched.last_discovery + 25.0
    sched.discovered(clock.monotonic())
    assert not sched.rediscover_due(clock.monotonic(), warming=True)


def test_a_network_change_rediscovers_at_once_and_requests_coalesce(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.discovered(clock.monotonic())
    sched.request_rediscover()
    sched.request_rediscover()
    assert sched.next_deadline(warming=False) <= clock.monotonic()
    assert sched.rediscover_due(clock.monotonic(), warming=False)
    assert not sched.rediscover_due(clock.monotonic(), warming=False)


def test_wireguard_is_polled_every_second_while_awaiting_or_busy_else_every_5s(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    assert not sched.poll_due(now)  # nothing to poll before a cycle asked for it
    sched.polled(now, awaiting=True, busy=False)
    assert sched.next_poll == now + 1.0
    sched.polled(now, awaiting=False, busy=True)
    assert sched.next_poll == now + 1.0
    sched.polled(now, awaiting=False, busy=False)
    assert sched.next_poll == now + 5.0
    sched.poll_soon(now)  # a fetch or apply: look within a second
    assert sched.next_poll == now + 1.0
    clock.advance(1.0)
    assert sched.poll_due(clock.monotonic())


def test_a_device_that_cannot_be_read_at_a_poll_is_polled_slowly_and_retried_with_backoff(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    sched.cycle_done(now, REFRESH, discovered=True)
    sched.poll_failed(now)
    assert (sched.next_poll, sched.next_full) == (now + 5.0, now + 0.25)


def test_a_handshake_older_than_180s_is_stale(clock: FakeClock) -> None:
    wall = clock.wall()
    assert handshake_recent(wall - 179.9, wall)
    assert not handshake_recent(wall - 180.0, wall)
    assert not handshake_recent(0.0, wall)  # never


def test_a_stale_handshake_refetches_at_once_with_a_new_grace(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.handshake_seen(PEER)
    now = clock.monotonic()
    sched.went_stale(PEER, now)
    assert sched.fetch_due(now) == {PEER}
    assert sched.grace_over(PEER, now) is False


def test_sending_without_reply_for_2s_breaks_the_path_refetch_and_rediscover_at_once(
    clock: FakeClock, sched: Schedule
) -> None:
    watch = TrafficWatch()
    rx, tx = 1000, 1000
    assert not watch.observe(rx, tx, clock.monotonic())
    for _ in range(3):  # data goes out, nothing comes back
        clock.advance(0.6)
        tx += 500
        assert not watch.observe(rx, tx, clock.monotonic())
    clock.advance(0.2)  # 2 s since the last reply
    tx += 500
    assert watch.observe(rx, tx, clock.monotonic())
    for _ in range(4):
        sched.refetch_later(PEER, clock.monotonic())
    sched.path_broken(PEER, clock.monotonic(), "ipv4")
    now = clock.monotonic()
    assert sched.fetch_due(now) == {PEER}
    assert sched.grace_over(PEER, now) is False
    assert sched.avoided_families(PEER, now) == {"ipv4"}
    assert sched.refetch_later(PEER, now) == now + 1.0  # backoff from the start


def test_a_broken_family_is_avoided_for_120s(clock: FakeClock, sched: Schedule) -> None:
    sched.endpoint_failed(PEER, clock.monotonic(), "ipv6")
    sched.endpoint_failed(PEER, clock.monotonic(), None)  # no endpoint: nothing to avoid
    clock.advance(119.9)
    assert sched.avoided_families(PEER, clock.monotonic()) == {"ipv6"}
    clock.advance(0.1)
    assert sched.avoided_families(PEER, clock.monotonic()) == frozenset()


async def test_after_our_endpoint_moved_kicks_wait_0_3s_after_the_publish(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.add_peer(OTHER, REFRESH)
    sched.applied(OTHER, clock.monotonic())  # set a while ago
    clock.advance(10.0)
    published = clock.monotonic()
    await clock.sleep(sched.kick_at(published) - clock.monotonic())
    assert clock.monotonic() == pytest.approx(published + 0.3)
    sched.applied(PEER, clock.monotonic())  # the cycle set its endpoint: that kicked it
    clock.advance(0.1)
    assert sched.kicked_with_apply(PEER, clock.monotonic())
    assert not sched.kicked_with_apply(OTHER, clock.monotonic())  # kick it
    sched.remove_peer(PEER)
    sched.add_peer(PEER, REFRESH)  # never set: kick it
    assert not sched.kicked_with_apply(PEER, clock.monotonic())


def test_15s_after_applying_an_endpoint_without_a_handshake_the_peer_is_failed(
    clock: FakeClock, sched: Schedule
) -> None:
    assert sched.grace_over(PEER, clock.monotonic()) is None  # nothing applied
    assert sched.settled(PEER, clock.monotonic())
    sched.applied(PEER, clock.monotonic())
    clock.advance(14.9)
    assert sched.grace_over(PEER, clock.monotonic()) is False
    assert not sched.settled(PEER, clock.monotonic())
    clock.advance(0.1)
    assert sched.grace_over(PEER, clock.monotonic()) is True
    assert sched.settled(PEER, clock.monotonic())


def test_a_link_appearing_resets_the_retry_delay_for_a_missing_device(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    for _ in range(9):
        sched.retry_device(now)
    assert sched.next_full == now + 30.0
    sched.link_appeared()
    sched.retry_device(now)
    assert sched.next_full == now + 0.25


def test_a_failure_never_stops_the_worker_the_next_try_comes_with_backoff(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    got = []
    for _ in range(4):
        sched.retry_device(now)
        got.append(sched.next_full - now)
    assert got == [0.25, 0.5, 1.0, 2.0]
    assert sched.next_deadline(warming=False) == now + 2.0


def test_missing_peers_are_looked_for_every_second_for_30s_after_a_device_appears(
    clock: FakeClock, sched: Schedule
) -> None:
    assert not sched.expecting_peers(clock.monotonic())  # no device yet
    sched.adopted(clock.monotonic())
    clock.advance(29.9)
    assert sched.expecting_peers(clock.monotonic())
    clock.advance(0.1)
    assert not sched.expecting_peers(clock.monotonic())


def test_a_ping_peer_is_pinged_every_interval(clock: FakeClock, sched: Schedule) -> None:
    sched.ping_later(PEER, clock.monotonic(), 10.0)
    clock.advance(9.9)
    assert sched.ping_due(clock.monotonic()) == set()
    clock.advance(0.1)
    assert sched.ping_due(clock.monotonic()) == {PEER}
    sched.ping_later(PEER, clock.monotonic(), None)  # ping settings gone
    clock.advance(3600)
    assert sched.ping_due(clock.monotonic()) == set()


def test_a_ping_targets_name_is_looked_up_again_after_300s_or_30s_after_a_failure(
    clock: FakeClock, sched: Schedule
) -> None:
    assert sched.resolve_due(PEER, clock.monotonic())
    sched.resolve_started(PEER, clock.monotonic())  # and it fails
    clock.advance(29.9)
    assert not sched.resolve_due(PEER, clock.monotonic())
    clock.advance(0.1)
    assert sched.resolve_due(PEER, clock.monotonic())
    sched.resolve_started(PEER, clock.monotonic())
    sched.resolved(PEER, clock.monotonic())
    clock.advance(299.9)
    assert not sched.resolve_due(PEER, clock.monotonic())
    clock.advance(0.1)
    assert sched.resolve_due(PEER, clock.monotonic())
    sched.resolved(PEER, clock.monotonic())
    sched.resolve_again(PEER)  # reloaded: the target may have changed
    assert sched.resolve_due(PEER, clock.monotonic())


def test_the_worker_sleeps_until_the_earliest_deadline(clock: FakeClock, sched: Schedule) -> None:
    now = clock.monotonic()
    sched.add_peer(OTHER, REFRESH)
    sched.cycle_done(now, REFRESH, discovered=True)
    sched.polled(now, awaiting=False, busy=False)
    assert sched.next_deadline(warming=False) == now + 5.0
    sched.ping_later(PEER, now, 3.0)
    assert sched.next_deadline(warming=False) == now + 3.0
    sched.publish_failed(OTHER, now)
    assert sched.next_deadline(warming=False) == now + 1.0
    sched.remove_peer(OTHER)
    sched.remove_peer(PEER)
    assert sched.next_deadline(warming=False) == now + 5.0


def test_a_watch_woken_reread_that_finds_no_record_is_retried_after_0_25s(
    clock: FakeClock, sched: Schedule
) -> None:
    now = clock.monotonic()
    sched.refetch_later(PEER, now)  # 1 s
    assert sched.refetch_later(PEER, now, news=True) == now + 0.25
    assert sched.refetch_later(PEER, now, news=True) == now + 0.25
    assert sched.refetch_later(PEER, now) == now + 2.0  # the backoff took no step for news


def test_a_silent_recreated_peer_is_checked_again_after_0_5s(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.cycle_done(clock.monotonic(), REFRESH, discovered=True)
    sched.collision_check(PEER, clock.monotonic())
    assert sched.next_deadline(warming=False) == clock.monotonic() + 0.5
    clock.advance(0.49)
    assert sched.collision_due(clock.monotonic()) == set()
    clock.advance(0.01)
    assert sched.collision_due(clock.monotonic()) == {PEER}
    sched.collision_checked(PEER)  # once only
    clock.advance(10.0)
    assert sched.collision_due(clock.monotonic()) == set()


def test_one_ping_check_per_peer_is_in_flight_and_the_next_comes_after_it(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.ping_later(PEER, clock.monotonic(), 2.0)
    clock.advance(2.0)
    assert sched.ping_due(clock.monotonic()) == {PEER}
    sched.ping_started(PEER)  # an unanswered ping takes its whole timeout
    clock.advance(5.0)
    assert sched.ping_due(clock.monotonic()) == set()  # no second check meanwhile
    sched.ping_later(PEER, clock.monotonic(), 2.0)  # it ended
    clock.advance(2.0)
    assert sched.ping_due(clock.monotonic()) == {PEER}


def test_a_watch_wake_during_the_peers_read_makes_it_read_again_at_once(
    clock: FakeClock, sched: Schedule
) -> None:
    sched.watch_woke(PEER, clock.monotonic())
    assert sched.fetch_due(clock.monotonic()) == {PEER}
    clock.advance(1.0)
    began = clock.monotonic()  # a read starts
    sched.fetch_started(PEER)
    clock.advance(0.2)
    sched.refetch_later(PEER, clock.monotonic())  # it found nothing: backoff
    assert not sched.reread_if_woken(PEER, began, clock.monotonic())  # no wake meanwhile
    assert sched.fetch_due(clock.monotonic()) == set()
    began = clock.monotonic()  # the next read
    clock.advance(0.1)
    sched.watch_woke(PEER, clock.monotonic())  # the peer published while it ran
    clock.advance(0.1)
    sched.refetch_later(PEER, clock.monotonic())
    assert sched.reread_if_woken(PEER, began, clock.monotonic())
    assert sched.fetch_due(clock.monotonic()) == {PEER}


def test_the_engine_reads_time_only_through_its_clock() -> None:
    """What the fake-clock tests rely on: no module of the engine but clock.py reads the wall
    or monotonic clock, or sleeps, by itself."""
    package = Path(engine.__file__).parent
    direct = re.compile(r"\btime\.(time|monotonic)\(|asyncio\.sleep\(|loop\.time\(|^import time$")
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(package.glob("*.py"))
        if path.name != "clock.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if direct.search(line.strip())
    ]
    assert offenders == []
    assert {"worker.py", "fetcher.py", "schedule.py"} <= {p.name for p in package.glob("*.py")}
