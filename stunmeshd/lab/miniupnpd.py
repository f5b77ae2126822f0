"""A port-mapping home router in the lab: Debian's miniupnpd (nftables build) on a NAT router.

miniupnpd serves UPnP IGD, NAT-PMP and PCP on the router's LAN side and writes its DNAT and
filter rules into its own nftables table, beside the lab's ``ip nat`` and ``inet filter``
tables (``nat_rules`` replaces only those, so a NAT switch keeps the mappings). Its chains
hook in just before the lab's (priority - 1), as on a real router.

Two things a real router would not need:

* miniupnpd 2.3.1 refuses to map when its external address is private or reserved, and the
  documentation ranges the lab uses (198.51.100.0/24, ...) are on its list. The site gets a
  routable-looking address outside that list, :data:`MAPPED_PUBLIC_IP` (the lab has no link
  to any real network, so nothing leaves it), and its NAT uses it as source.
* miniupnpd switches NAT-PMP and PCP together (``enable_natpmp``). To offer one alone, the
  router's own firewall drops the other on udp/5351 by the version byte of the request
  (0 = NAT-PMP, 2 = PCP), exactly as if the router did not speak it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Collection
from typing import TYPE_CHECKING

from stunmeshd.lab.netns import LabError

if TYPE_CHECKING:
    from stunmeshd.lab.topology import Lab, Site

MAPPED_PUBLIC_IP = "192.0.3.10"  # not in miniupnpd's reserved list (getifaddr.c)
PROTOCOLS = frozenset({"pcp", "natpmp", "upnp"})
PCP_PORT = 5351
SSDP_PORT = 1900
TABLE = "miniupnpd"
LIE_TABLE = "lying_router"  # see MappingRouter.lie
VERSION_BYTE = {"natpmp": 0, "pcp": 2}  # the first byte of a request on udp/5351


def router_table(protocols: Collection[str]) -> str:
    """miniupnpd's nftables table: its hooks, its empty chains, and the protocol gate."""
    gate = "\n".join(
        f"    udp dport {PCP_PORT} @th,64,8 {byte} drop"
        for name, byte in VERSION_BYTE.items()
        if name not in protocols
    )
    return f"""
table inet {TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 1; policy accept;
    jump miniupnpd
  }}
  chain miniupnpd {{ }}
  chain prerouting {{
    type nat hook prerouting priority dstnat - 1; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat - 1; policy accept;
    jump postrouting_miniupnpd
  }}
  chain prerouting_miniupnpd {{ }}
  chain postrouting_miniupnpd {{ }}
  chain gate {{
    type filter hook input priority filter - 1; policy accept;
{gate}
  }}
}}
"""


def router_config(site: Site, protocols: Collection[str], *, min_lifetime: int) -> str:
    """miniupnpd.conf: mappings only for the site's LAN, only to ports >= 1024."""
    lan = site.lan_ip.rsplit(".", 1)[0] + ".0/24"
    return "\n".join(
        [
            "ext_ifname=pub",
            f"ext_ip={MAPPED_PUBLIC_IP}",
            "listening_ip=lan",
            "port=0",
            f"enable_natpmp={'yes' if {'pcp', 'natpmp'} & set(protocols) else 'no'}",
            f"enable_upnp={'yes' if 'upnp' in protocols else 'no'}",
            "secure_mode=yes",
            "system_uptime=no",
            f"min_lifetime={min_lifetime}",
            "max_lifetime=86400",
            f"upnp_table_name={TABLE}",
            f"upnp_nat_table_name={TABLE}",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            "uuid=3d3cec3a-8cf0-11e0-98ee-001a6b5a1bd0",
            f"allow 1024-65535 {lan} 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ]
    )


class MappingRouter:
    """miniupnpd on one site's NAT router; :meth:`stop` and :meth:`start` model a reboot."""

    def __init__(
        self, lab: Lab, site: Site, protocols: Collection[str], *, min_lifetime: int = 2
    ) -> None:
        unknown = set(protocols) - PROTOCOLS
        if unknown or not protocols:
            raise LabError(f"mapping router protocols: {sorted(protocols)} (from {PROTOCOLS})")
        self.lab, self.site = lab, site
        self.protocols = frozenset(protocols)
        self.config_path = lab.workdir / f"miniupnpd-{site.label}.conf"
        self.config_path.write_text(router_config(site, self.protocols, min_lifetime=min_lifetime))
        self.process: asyncio.subprocess.Process | None = None

    async def setup(self) -> None:
        """Give the site its routable public address, and miniupnpd its table."""
        router, wan = self.site.router, self.lab.wan
        await router.run("ip", "addr", "add", f"{MAPPED_PUBLIC_IP}/32", "dev", "pub")
        await router.run(
            "ip", "route", "replace", "default", "via", self.site.wan_ip, "src", MAPPED_PUBLIC_IP
        )
        await wan.run("ip", "route", "add", f"{MAPPED_PUBLIC_IP}/32", "via", self.site.public_ip)
        self.site.public_ip = MAPPED_PUBLIC_IP
        await router.run("nft", "-f", "-", input=router_table(self.protocols).encode())

    async def start(self) -> None:
        if self.process is not None and self.process.returncode is None:
            return
        self.process = await self.lab.spawn(
            self.site.router,
            "miniupnpd",
            "-d",
            "-f",
            str(self.config_path),
            "-P",  # its own pid file: labs run side by side
            str(self.config_path.with_suffix(".pid")),
        )
        ready_port = PCP_PORT if {"pcp", "natpmp"} & self.protocols else SSDP_PORT
        await self.lab.wait_udp_listening(self.site.router, ready_port)

    async def stop(self, *, graceful: bool = True) -> None:
        """Stop miniupnpd (its rules stay in place, see :meth:`reboot`)."""
        proc, self.process = self.process, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def reboot(self) -> None:
        """Stop miniupnpd, forget every mapping (its rules), start it again: a router reboot.

        (miniupnpd leaves its rules in place when it stops; a rebooted router has none.)
        """
        await self.stop()
        reset = f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
        await self.site.router.run(
            "nft", "-f", "-", input=(reset + router_table(self.protocols)).encode()
        )
        await self.start()

    async def lie(self) -> None:
        """Make the router lie: it still grants mappings, but drops everything they forward
        (a filter rule on what its DNAT rewrote, ahead of miniupnpd's own forward chain)."""
        table = f"""
table inet {LIE_TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 2; policy accept;
    iifname "pub" ct status dnat drop
  }}
}}
"""
        await self.site.router.run("nft", "-f", "-", input=table.encode())

    async def rules(self) -> str:
        """miniupnpd's current DNAT rules (one line per mapping)."""
        out = await self.site.router.run(
            "nft", "list", "chain", "inet", TABLE, "prerouting_miniupnpd"
        )
        return "\n".join(line.strip() for line in out.splitlines() if "dnat" in line)
