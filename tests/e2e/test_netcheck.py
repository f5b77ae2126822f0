"""``stunmeshctl netcheck`` in the lab (coturn, nftables NATs, routed IPv6): what it says about
each NAT behaviour is what the lab's rules make it, parsed from --json; and the RFC 5780
filtering decision against a stand-in server that answers or not from its other address."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from stunmeshd.ctl.netcheck import classify_filtering
from stunmeshd.errors import StunError
from stunmeshd.lab.miniupnpd import MAPPED_PUBLIC_IP
from stunmeshd.lab.topology import Lab, NatMode
from stunmeshd.stun.client import BindingResult
from stunmeshd.stun.codec import CHANGE_IP, CHANGE_PORT
from tests.prereq import require_tools

V4 = ["198.51.100.1:3478", "203.0.113.1:3478"]
V6 = ["[2001:db8:a::1]:3478", "[2001:db8:b::1]:3478"]


async def netcheck(lab: Lab, *args: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "stunmeshd.ctl", "--json", "netcheck", *args]
    return json.loads(await lab.a.host.run(*argv, timeout=60))


@pytest.mark.root
async def test_netcheck_tells_the_lab_nats_apart() -> None:
    async with Lab(ipv6=True) as lab:
        servers = [f"--server={s}" for s in V4 + V6]

        # natA maps other ports like a cone NAT (its special rule is for WireGuard's port)
        report = await netcheck(lab, *servers)
        v4, v6 = report["families"]["ipv4"], report["families"]["ipv6"]
        assert v4["reachable"] and v4["behind_nat"] and v4["local"] == "198.18.1.2"
        assert v4["public"] == f"198.51.100.10:{v4['source_port']}"  # masquerade keeps ports
        assert v4["mapping"] == "endpoint-independent" and v4["stable"] is True
        assert v4["filtering"] == "address-and-port-dependent"  # conntrack lets replies in only
        probes = {p["server"]: p for p in report["probes"]}
        assert set(probes) == set(V4 + V6)
        assert all(p["rtt_ms"] > 0 and p["error"] == "" for p in probes.values())
        assert probes[V4[0]]["other_address"] == "203.0.113.1:3479"  # coturn's RFC 5780 pair
        assert v6["reachable"] and v6["behind_nat"] is False  # routed, not translated
        assert v6["public"].startswith("[2001:db8:1::2]:")
        assert "cone-NAT peers" in report["verdict"] and "IPv6 works" in report["verdict"]
        mapping = report["port_mapping"]  # natA without a mapping router: asked, none offered
        assert mapping["gateway"] == lab.a.gateway_ip and mapping["external_ip"] == ""
        assert mapping["protocols"] == {"pcp": False, "natpmp": False, "upnp": False}

        # from WireGuard's own port (raw socket, as the daemon): natA's rule moves it to 40000
        await lab.start_wireguard(lab.a)
        report = await netcheck(lab, "--family=ipv4", "--port=51820", *servers)
        assert report["mode"] == "raw socket"
        assert report["families"]["ipv4"]["public"] == "198.51.100.10:40000"

        # symmetric: a new port per destination, detected and said plainly
        await lab.set_nat(lab.a, NatMode.SYMMETRIC)
        await lab.flush_conntrack(lab.a)
        report = await netcheck(lab, "--family=ipv4", *servers)
        v4 = report["families"]["ipv4"]
        assert v4["mapping"] == "address-and-port-dependent" and v4["stable"] is False
        assert report["verdict"].startswith("direct IPv4 connections will fail")

        # text for people: one line per server, and the verdict last
        text = await lab.a.host.run(
            sys.executable, "-m", "stunmeshd.ctl", "netcheck", "--family=ipv4", *servers
        )
        lines = text.splitlines()
        assert sum(line.startswith("  * STUN ") for line in lines) == 2
        assert "DIFFERENT per server" in text and lines[-1].startswith("verdict: ")

        # no server answers: exit 1 and say so
        proc = await asyncio.create_subprocess_exec(
            *lab.a.host.enter_argv(), sys.executable, "-m", "stunmeshd.ctl", "netcheck",
            "--family=ipv4", "--server=198.51.100.1:9", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode == 1 and b"no STUN server answered" in out


@pytest.mark.root
@pytest.mark.parametrize("protocol", ["natpmp", "pcp", "upnp"])
async def test_netcheck_names_the_routers_mapping_protocol(protocol: str) -> None:
    """natA symmetric, its router (miniupnpd) offering one protocol: netcheck names exactly
    that one, says direct connections work through it, and leaves no mapping behind."""
    require_tools("miniupnpd")
    async with Lab(nat_a=NatMode.SYMMETRIC) as lab:
        router = await lab.start_mapping_router(lab.a, {protocol})
        report = await netcheck(lab, "--family=ipv4", *(f"--server={s}" for s in V4))
        mapping = report["port_mapping"]
        assert mapping["gateway"] == lab.a.gateway_ip
        assert mapping["protocols"] == {p: p == protocol for p in ("pcp", "natpmp", "upnp")}
        # only NAT-PMP's answer carries the external address
        assert mapping["external_ip"] == (MAPPED_PUBLIC_IP if protocol == "natpmp" else "")
        assert report["families"]["ipv4"]["mapping"] == "address-and-port-dependent"
        name = {"natpmp": "NAT-PMP", "pcp": "PCP", "upnp": "UPnP IGD"}[protocol]
        assert report["verdict"].startswith(
            f"direct connections will work through the router's port mapping ({name})"
        )
        assert await router.rules() == ""  # a probe only: nothing was mapped


class StandInServer:
    """Answers a change request from its other address only when the NAT would let it in."""

    def __init__(self, lets_in: set[int], origin_moves: bool = True) -> None:
        self.lets_in, self.origin_moves = lets_in, origin_moves
        self.asked: list[int] = []

    async def binding(self, server: tuple[str, int], *, change: int = 0) -> BindingResult:
        self.asked.append(change)
        if change not in self.lets_in:
            raise StunError(f"{server}: no answer to 3 requests in 1.8 s")
        origin = ("203.0.113.1", 3479) if self.origin_moves else server
        return BindingResult(("198.51.100.10", 1), server, None, origin, 0.001)


FIRST = BindingResult(
    ("198.51.100.10", 1), ("198.51.100.1", 3478), ("203.0.113.1", 3479), None, 0.001
)


@pytest.mark.parametrize(
    ("lets_in", "expected"),
    [
        ({CHANGE_IP | CHANGE_PORT, CHANGE_PORT}, "endpoint-independent"),
        ({CHANGE_PORT}, "address-dependent"),
        (set(), "address-and-port-dependent"),
    ],
)
async def test_filtering_tests_follow_rfc5780(lets_in: set[int], expected: str) -> None:
    assert await classify_filtering(StandInServer(lets_in), FIRST) == expected  # type: ignore[arg-type]


async def test_filtering_is_unknown_without_rfc5780_support() -> None:
    server = StandInServer({CHANGE_IP | CHANGE_PORT}, origin_moves=False)
    assert await classify_filtering(server, FIRST) == "unknown"  # type: ignore[arg-type]
    no_other = BindingResult(FIRST.mapped, FIRST.server, None, None, 0.001)
    assert await classify_filtering(StandInServer(set()), no_other) == "unknown"  # type: ignore[arg-type]
