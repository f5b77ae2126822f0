"""A one-screen picture of the lab's topology with every hop's address, for people.

``make demo`` and ``make lab`` print it first, so what follows (endpoints, NAT ports) can be
read against it.
"""

from __future__ import annotations

from stunmeshd.lab.topology import STUN_PORT, WAN_A_IP, WAN_B_IP, WG_PORT, Lab, Site


def _site(site: Site) -> list[str]:
    name = site.label.upper()
    mapping = str(site.nat)
    if site.nat == "port-changing":
        mapping += f" (:{WG_PORT} -> :{site.snat_port})"
    return [
        f"host{name} {site.lan_ip} ── nat{name} {site.gateway_ip} | {site.public_ip} ──",
        f"  wg0 :{WG_PORT}, tunnel {site.tunnel_ip}",
        f"  nat{name}: {mapping}",
    ]


def topology_picture(lab: Lab, *, store: str = "OpenDHT :8080-8082") -> str:
    """The two sites, their NAT routers and the "internet" between them, with addresses."""
    a, b = _site(lab.a), _site(lab.b)
    width = max(len(line) for line in a + b) + 1
    wan = f"── wan {WAN_A_IP} / {WAN_B_IP}"
    services = f"   STUN (coturn) :{STUN_PORT}, {store}"
    lines = [
        f"{a[0]:─<{width}}┐",
        f"{a[1]:<{width}}│",
        f"{a[2]:<{width}}├{wan}",
        f"{'':<{width}}│{services}",
        f"{b[0]:─<{width}}┘",
        b[1],
        b[2],
    ]
    if lab.ipv6:
        lines.append(
            f"IPv6 (routed, stateful firewalls): hostA {lab.a.lan_ip6}, hostB {lab.b.lan_ip6}"
        )
    return "\n".join(line.rstrip() for line in lines)
