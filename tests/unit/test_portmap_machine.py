"""The port-mapping state machine driven by a fake clock: probe, map, renew, delete, re-map."""

from __future__ import annotations

import pytest

from stunmeshd.portmap.machine import (
    MAP_ATTEMPTS,
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
