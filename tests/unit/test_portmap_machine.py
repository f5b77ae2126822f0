"""The port-mapping state machine driven by a fake clock: probe, map, renew, delete, re-map."""

from __future__ import annotations

import pytest

from stunmeshd.portmap.device import properties
from stunmeshd.portmap.machine import (
    DISTRUST_CAP,
    DISTRUST_START,
    MAP_ATTEMPTS,
    NOT_FORWARDING_GRACE,
    PROBE_BACKOFF_START,
    Map,
    Phase,
    PortMapMachine,
    Probe,
    Protocol,
    Unmap,
)

PORT = 51820


def drain(m: PortMapMachine) -> list[object]:
    out = []
    while (action := m.next_action()) is not None:
        out.append(action)
    return out


def mapped_machine(lifetime: int = 100, protocol: Protocol = Protocol.PCP) -> PortMapMachine:
    m = PortMapMachine(lifetime=lifetime, now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    assert isinstance(probe, Probe)
    m.probe_done(probe.seq, protocol, 0.1)
    (req,) = drain(m)
    assert isinstance(req, Map)
    m.mapped(req.seq, "192.0.3.10", 40001, lifetime, 0.2)
    return m


def test_probe_then_map_only_wireguards_port() -> None:
    m = PortMapMachine(lifetime=100, now=0.0)
    assert m.status.phase is Phase.IDLE and drain(m) == []
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    assert probe == Probe(probe.seq, (Protocol.PCP, Protocol.NATPMP, Protocol.UPNP))
    m.probe_done(probe.seq, Protocol.NATPMP, 0.5)
    (req,) = drain(m)
    assert req == Map(req.seq, Protocol.NATPMP, PORT, 100, PORT)
    m.mapped(req.seq, "192.0.3.10", 40001, 100, 0.6)
    st = m.status
    assert st.phase is Phase.MAPPED and st.mapping is not None
    assert (st.mapping.endpoint, st.mapping.protocol) == ("192.0.3.10:40001", Protocol.NATPMP)
    assert st.mapping.expires == pytest.approx(100.6)


def test_a_forced_protocol_is_the_only_one_probed() -> None:
    m = PortMapMachine(mode="upnp", now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    assert probe.protocols == (Protocol.UPNP,)


def test_off_never_acts_and_says_why() -> None:
    m = PortMapMachine(mode="off", now=0.0)
    m.set_port(PORT, 0.0)
    m.network_changed("gateway changed", 1.0)
    m.handle_timer(1e9)
    m.stop(2.0)
    assert drain(m) == []
    assert m.get_timer() is None


def test_bad_mode_and_lifetime_are_refused() -> None:
    with pytest.raises(ValueError):
        PortMapMachine(mode="igd", now=0.0)
    with pytest.raises(ValueError):
        PortMapMachine(lifetime=0, now=0.0)


def test_renewal_at_half_the_granted_lifetime_keeps_the_external_port() -> None:
    m = mapped_machine(lifetime=100)
    assert m.get_timer() == pytest.approx(50.2)
    m.handle_timer(50.0)  # too early: nothing
    assert drain(m) == []
    m.handle_timer(50.2)
    (renew,) = drain(m)
    assert isinstance(renew, Map) and renew.external_port == 40001
    assert m.status.phase is Phase.RENEWING
    assert m.status.mapping is not None  # the mapping stays published while renewing
    m.mapped(renew.seq, "192.0.3.10", 40001, 100, 50.3)
    assert m.status.phase is Phase.MAPPED and m.get_timer() == pytest.approx(100.3)


def test_a_failed_renewal_maps_again_from_a_probe() -> None:
    m = mapped_machine()
    m.handle_timer(m.get_timer() or 0)
    (renew,) = drain(m)
    m.failed(renew.seq, "timeout", 51.0)
    assert m.status.mapping is None
    (probe,) = drain(m)
    assert isinstance(probe, Probe) and m.status.phase is Phase.PROBING
    m.probe_done(probe.seq, Protocol.PCP, 51.1)
    (again,) = drain(m)
    m.mapped(again.seq, "192.0.3.10", 40002, 100, 51.2)
    assert m.status.mapping is not None and m.status.mapping.external_port == 40002


def test_stop_deletes_the_mapping_once() -> None:
    m = mapped_machine()
    m.stop(10.0)
    assert drain(m) == [Unmap(3, Protocol.PCP, PORT, 40001)]
    assert m.status.phase is Phase.STOPPED and m.get_timer() is None
    m.stop(11.0)
    m.set_port(1234, 12.0)
    assert drain(m) == []


def test_a_port_change_deletes_the_old_mapping_and_maps_the_new_port() -> None:
    m = mapped_machine()
    m.set_port(51821, 5.0)
    unmap, probe = drain(m)
    assert unmap == Unmap(unmap.seq, Protocol.PCP, PORT, 40001)
    assert isinstance(probe, Probe)
    m.probe_done(probe.seq, Protocol.PCP, 5.1)
    (req,) = drain(m)
    assert isinstance(req, Map) and req.internal_port == 51821


def test_network_change_forgets_the_mapping_and_ignores_late_answers() -> None:
    m = PortMapMachine(lifetime=100, now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    m.probe_done(probe.seq, Protocol.UPNP, 0.1)
    (req,) = drain(m)
    m.network_changed("default gateway changed", 0.2)
    (probe2,) = drain(m)
    m.mapped(req.seq, "192.0.3.10", 1, 100, 0.3)  # the overtaken request's answer
    assert m.status.mapping is None and m.status.phase is Phase.PROBING
    m.probe_done(probe2.seq, Protocol.PCP, 0.4)
    (req2,) = drain(m)
    assert isinstance(req2, Map) and req2.protocol is Protocol.PCP


def test_no_router_backs_off_and_probes_again() -> None:
    m = PortMapMachine(now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    m.probe_done(probe.seq, None, 1.0)
    assert m.status.phase is Phase.WAITING and "no router answered" in m.status.reason
    assert m.get_timer() == pytest.approx(1.0 + PROBE_BACKOFF_START)
    m.handle_timer(1.0 + PROBE_BACKOFF_START)
    (probe2,) = drain(m)
    m.probe_done(probe2.seq, None, 32.0)
    assert m.get_timer() == pytest.approx(32.0 + 2 * PROBE_BACKOFF_START)


def test_refused_mapping_is_retried_then_probed_again() -> None:
    m = PortMapMachine(now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    m.probe_done(probe.seq, Protocol.NATPMP, 0.0)
    now = 0.0
    for attempt in range(MAP_ATTEMPTS):
        (req,) = drain(m)
        assert isinstance(req, Map)
        m.failed(req.seq, "natpmp: NOT_AUTHORIZED", now)
        assert m.status.phase is Phase.WAITING and "NOT_AUTHORIZED" in m.status.reason
        now = m.get_timer() or 0.0
        m.handle_timer(now)
        if attempt < MAP_ATTEMPTS - 1:
            assert m.status.phase is Phase.MAPPING
    (probe2,) = drain(m)
    assert isinstance(probe2, Probe)


def test_a_zero_lifetime_or_port_answer_is_a_failure() -> None:
    m = PortMapMachine(now=0.0)
    m.set_port(PORT, 0.0)
    (probe,) = drain(m)
    m.probe_done(probe.seq, Protocol.PCP, 0.0)
    (req,) = drain(m)
    m.mapped(req.seq, "192.0.3.10", 40001, 0, 0.1)
    assert m.status.mapping is None and m.status.phase is Phase.WAITING


# --- a router that lies: it grants the mapping, nothing arrives through it ------------------

LIE = "192.0.3.10:40001"


def remap(m: PortMapMachine, now: float, endpoint: str = LIE) -> None:
    """Answer the probe and the mapping request the machine has just queued."""
    (probe,) = drain(m)
    assert isinstance(probe, Probe)
    m.probe_done(probe.seq, Protocol.PCP, now)
    (req,) = drain(m)
    assert isinstance(req, Map)
    ip, port = endpoint.split(":")
    m.mapped(req.seq, ip, int(port), 100, now)


def test_a_mapping_that_never_carried_is_remapped_once_then_dropped_and_not_asked_for() -> None:
    m = mapped_machine()  # granted at 0.2
    g = NOT_FORWARDING_GRACE
    # the peers have not had their chance yet: health's early reports are not held against it
    # (the caller is told when it would count, to ask again then)
    assert m.path_failed("peer b: nothing received", 0.2 + g - 1, carried=False) == 0.2 + g
    assert drain(m) == [] and m.status.phase is Phase.MAPPED
    # the first failure: the router may have lost it, map again
    m.path_failed("peer b: no handshake", 0.2 + g, carried=False)
    remap(m, 1 + g)  # the router grants the same endpoint again
    assert m.status.phase is Phase.MAPPED
    m.path_failed("peer b: no handshake", 2 * g, carried=False)
    assert drain(m) == [] and m.status.phase is Phase.MAPPED
    # and it still carries nothing: deleted at the router, and no mapping for a while
    verdict = 1 + 2 * g
    m.path_failed("peer b: no handshake", verdict, carried=False)
    (unmap,) = drain(m)
    assert unmap == Unmap(unmap.seq, Protocol.PCP, PORT, 40001)
    st = m.status
    assert st.phase is Phase.DISTRUSTED and st.mapping is None
    assert st.reason == (
        f"router mapped {LIE} (pcp) but nothing arrived through it; "
        f"not mapping for {DISTRUST_START / 60:.0f} min"
    )
    assert m.get_timer() == verdict + DISTRUST_START
    assert properties(st, 0.0) == {  # the Device's fields, as the seam sets them
        "port_mapping": "",
        "port_mapping_endpoint": "",
        "port_mapping_expires": 0,
        "port_mapping_reason": st.reason,
    }
    # routes or addresses changed on the same gateway: still not asked
    m.network_changed("addresses or routes changed", verdict + 5, gateway_moved=False)
    m.handle_timer(verdict + DISTRUST_START - 1)
    assert drain(m) == [] and m.status.phase is Phase.DISTRUSTED


def distrusted_machine() -> tuple[PortMapMachine, float]:
    """A machine that judged its router not forwarding (two strikes), and when it did."""
    m = mapped_machine()
    g = NOT_FORWARDING_GRACE
    m.path_failed("peer b: no handshake", 0.2 + g, carried=False)
    remap(m, 1 + g)
    verdict = 1 + 2 * g
    m.path_failed("peer b: no handshake", verdict, carried=False)
    drain(m)
    assert m.status.phase is Phase.DISTRUSTED
    return m, verdict


def test_after_the_distrust_one_more_failure_decides_and_the_wait_doubles() -> None:
    m, _ = distrusted_machine()
    g = NOT_FORWARDING_GRACE
    first = m.get_timer()
    assert first is not None
    waits = []
    now = first
    for _ in range(5):
        m.handle_timer(now)
        remap(m, now)  # asked again: the same lie
        now += g
        m.path_failed("x", now, carried=False)
        assert m.status.phase is Phase.DISTRUSTED
        assert [type(a) for a in drain(m)] == [Unmap]
        timer = m.get_timer()
        assert timer is not None
        waits.append(timer - now)
        now = timer
    assert waits == [
        2 * DISTRUST_START,
        4 * DISTRUST_START,
        DISTRUST_CAP,
        DISTRUST_CAP,
        DISTRUST_CAP,
    ]


def test_a_mapping_that_carried_traffic_is_only_ever_mapped_again() -> None:
    """The control: an honest router that restarted (forgot it) or a peer that went away."""
    m = mapped_machine()
    now = 0.2
    for _ in range(4):
        now += 1  # no grace: the peers evidently had it
        m.path_failed("peer b: nothing received", now, carried=True)
        assert m.status.mapping is None and m.status.phase is Phase.PROBING
        remap(m, now)
        assert m.status.phase is Phase.MAPPED
    assert "not forwarding" not in m.status.reason


def test_a_gateway_that_moved_ends_the_distrust_and_starts_afresh() -> None:
    m, _ = distrusted_machine()
    g = NOT_FORWARDING_GRACE
    m.network_changed("default gateway changed", 100.0)
    remap(m, 100.0)  # a new router: the same endpoint is not held against it
    m.path_failed("x", 100 + g, carried=False)
    assert m.status.phase is Phase.PROBING  # mapped again, not judged


def test_a_different_endpoint_granted_after_a_failure_starts_afresh() -> None:
    m = mapped_machine()
    g = NOT_FORWARDING_GRACE
    m.path_failed("x", 0.2 + g, carried=False)
    remap(m, 1 + g, "192.0.3.10:40002")
    m.path_failed("x", 1 + 2 * g, carried=False)
    assert m.status.phase is Phase.PROBING


def test_failures_without_a_published_mapping_are_ignored() -> None:
    m = PortMapMachine(now=0.0)
    m.set_port(PORT, 0.0)
    drain(m)
    m.path_failed("x", 100.0, carried=False)
    assert drain(m) == [] and m.status.phase is Phase.PROBING


def test_a_peer_that_comes_back_with_a_new_endpoint_ends_the_verdict() -> None:
    """An honest router and a peer that was switched off look alike; its return tells them apart."""
    m, verdict = distrusted_machine()
    g = NOT_FORWARDING_GRACE
    m.peer_moved("peer b published a new endpoint 198.51.100.7:40000")
    # asked again at once, not after the 10 min
    assert m.status.phase is Phase.PROBING and m.next_action_pending()
    # a router that does lie is judged again, and the wait after that keeps its doubling
    remap(m, verdict + 1)
    m.path_failed("x", verdict + 1 + g, carried=False)
    remap(m, verdict + 2 + g)
    m.path_failed("x", verdict + 2 + 2 * g, carried=False)
    drain(m)
    assert m.status.phase is Phase.DISTRUSTED
    assert m.get_timer() == verdict + 2 + 2 * g + 2 * DISTRUST_START


def test_a_peer_that_moved_forgets_a_strike_but_leaves_a_working_mapping_alone() -> None:
    m = mapped_machine()
    g = NOT_FORWARDING_GRACE
    m.path_failed("x", 0.2 + g, carried=False)
    remap(m, 1 + g)  # one strike against this endpoint
    m.peer_moved("peer b published a new endpoint 198.51.100.7:40000")
    assert drain(m) == [] and m.status.phase is Phase.MAPPED
    m.path_failed("x", 1 + 2 * g, carried=False)  # counts as a first failure again
    assert m.status.phase is Phase.PROBING
