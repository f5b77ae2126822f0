"""netcheck's report for people: the verdict for each situation, and text for every probe
outcome (answered, failed, never sent). The measurements themselves are tested in the lab
(tests/e2e/test_netcheck.py)."""

from __future__ import annotations

from stunmeshd.ctl.netcheck import (
    FamilyReport,
    PortMappingReport,
    Probe,
    Report,
    render,
    verdict,
)


def report(**families: FamilyReport) -> Report:
    return Report(mode="udp socket", source_port=None, servers_from="--server", families=families)


def cone(**kw: object) -> FamilyReport:
    fields = dict(reachable=True, public="198.51.100.10:4000", local="198.18.1.2",
                  behind_nat=True, mapping="endpoint-independent",
                  filtering="address-and-port-dependent", stable=True)  # fmt: skip
    fields.update(kw)
    return FamilyReport("ipv4", **fields)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert "cone-NAT peers" in verdict(report(ipv4=cone()))
    open_nat = verdict(report(ipv4=cone(filtering="endpoint-independent")))
    assert open_nat.startswith("direct connections will work, also with most peers behind sym")
    symmetric = verdict(report(ipv4=cone(mapping="address-and-port-dependent", stable=False)))
    assert symmetric.startswith("direct IPv4 connections will fail")
    v6 = FamilyReport("ipv6", reachable=True, public="[2001:db8:1::2]:4000", behind_nat=False)
    assert verdict(report(ipv4=cone(mapping="address-dependent"), ipv6=v6)).endswith(
        "use IPv6 (it works here)"
    )
    assert verdict(report(ipv4=cone(behind_nat=False))).startswith("no NAT on IPv4")
    assert verdict(report(ipv4=cone(mapping="unknown"))).startswith(
        "this host's endpoint is 198.51.100.10:4000, NAT behaviour unknown"
    )
    silent = FamilyReport("ipv4", note="no STUN server answered")
    assert verdict(report(ipv4=silent)).startswith("no STUN server answered")
    assert verdict(report(ipv4=silent, ipv6=v6)).startswith("only IPv6 works")
    blocked = FamilyReport("ipv4", note="cannot probe: CAP_NET_RAW is missing")
    assert verdict(report(ipv4=blocked)) == "nothing was measured: CAP_NET_RAW is missing"


def test_text_for_every_probe_outcome() -> None:
    rep = report(ipv4=cone(source_port=4000))
    rep.probes = [
        Probe("198.51.100.1:3478", "ipv4", rtt_ms=0.42, mapped="198.51.100.10:4000"),
        Probe("203.0.113.1:3478", "ipv4", error="no answer to 3 requests in 1.8 s"),
        Probe("192.0.2.1:3478", "ipv4"),  # never sent
    ]
    rep.verdict = verdict(rep)
    lines = render(rep).splitlines()
    assert "0.4 ms, mapped 198.51.100.10:4000" in lines[1]
    assert lines[2].endswith("failed: no answer to 3 requests in 1.8 s")
    assert lines[3].endswith("failed: not probed")
    assert "public 198.51.100.10:4000 (behind NAT, local 198.18.1.2; from port 4000)" in lines[4]
    assert lines[-1] == f"verdict: {rep.verdict}"


NATPMP_ONLY = PortMappingReport(
    gateway="198.18.1.1",
    protocols={"pcp": False, "natpmp": True, "upnp": False},
    external_ip="192.0.3.10",
    note="",
)
NONE_OFFERED = PortMappingReport(
    gateway="198.18.1.1", protocols={"pcp": False, "natpmp": False, "upnp": False}, note=""
)


def test_verdicts_with_port_mapping() -> None:
    symmetric = report(ipv4=cone(mapping="address-and-port-dependent", stable=False))
    symmetric.port_mapping = NATPMP_ONLY
    assert verdict(symmetric).startswith(
        "direct connections will work through the router's port mapping (NAT-PMP), although "
        "this NAT's mapping is address-and-port-dependent (symmetric)"
    )
    symmetric.port_mapping = NONE_OFFERED
    assert verdict(symmetric).startswith("direct IPv4 connections will fail")
    port_restricted = report(ipv4=cone())
    port_restricted.port_mapping = NATPMP_ONLY
    assert verdict(port_restricted).startswith(
        "direct connections will work, also with peers behind symmetric NATs, through the "
        "router's port mapping (NAT-PMP)"
    )
    unknown = report(ipv4=cone(mapping="unknown"))
    unknown.port_mapping = NATPMP_ONLY
    assert verdict(unknown).endswith("; the router offers port mapping (NAT-PMP)")
    no_nat = report(ipv4=cone(behind_nat=False))
    no_nat.port_mapping = NATPMP_ONLY
    assert verdict(no_nat).startswith("no NAT on IPv4")


def test_text_for_port_mapping() -> None:
    rep = report(ipv4=cone(source_port=4000))
    assert render(rep).splitlines()[-2] == "  * port mapping: not probed (only IPv6 was probed)"
    rep.port_mapping = NATPMP_ONLY
    assert render(rep).splitlines()[-2] == (
        "  * port mapping: gateway 198.18.1.1: NAT-PMP offered; not PCP, UPnP IGD; "
        "external address 192.0.3.10"
    )
    rep.port_mapping = NONE_OFFERED
    assert render(rep).splitlines()[-2] == "  * port mapping: gateway 198.18.1.1: none offered"
    rep.port_mapping = PortMappingReport(
        gateway="198.18.1.1",
        protocols={"pcp": False, "natpmp": False, "upnp": True},
        note="NAT-PMP answered NOT_AUTHORIZED",
    )
    assert (
        render(rep)
        .splitlines()[-2]
        .endswith("UPnP IGD offered; not PCP, NAT-PMP; NAT-PMP answered NOT_AUTHORIZED")
    )
    rep.port_mapping = PortMappingReport(note="not probed (no default IPv4 gateway)")
    assert render(rep).splitlines()[-2].endswith(": not probed (no default IPv4 gateway)")
    assert rep.to_json()["port_mapping"]["note"] == "not probed (no default IPv4 gateway)"
