"""The two-site NAT test bed of docs/testbed.md, built in network namespaces.

    hostA ── natA ── wan ── natB ── hostB        coturn (and later dhtnode) in wan

Used by the root tests, the benchmarks and ``make demo``. Nothing links to the root namespace;
everything is torn down on exit, also on failure.

With ``Lab(ipv6=True)`` the bed is dual stack: IPv6 is routed, not translated (each host's
public IPv6 address is its LAN address), and each site router runs a stateful firewall that
only lets replies in — the usual IPv6 home router, which WireGuard must punch just like a NAT.
Opt-in, so the IPv4 tests run on exactly the bed they were written for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import secrets
import signal
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from nacl.public import PrivateKey

from stunmeshd.lab.dht import DhtCluster, start_dht_nodes
from stunmeshd.lab.miniupnpd import MappingRouter
from stunmeshd.lab.netns import (
    Host,
    LabError,
    Namespace,
    private_mount_dir,
    release_mount_dir,
    run,
)
from stunmeshd.lab.resource import Resource

WG_PORT = 51820
SNAT_PORT = 40000
STUN_PORT = 3478
WAN_A_IP = "198.51.100.1"
WAN_B_IP = "203.0.113.1"
# IPv6 (2001:db8::/32): site LANs 2001:db8:1::/64 and :2::/64, wan links :a::/64 and :b::/64
WAN_A_IP6 = "2001:db8:a::1"
WAN_B_IP6 = "2001:db8:b::1"
LAB_RUN_DIR = Path("/run/stunmeshd-lab")


class NatMode(StrEnum):
    """How a site's router maps the host's UDP flows."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"  # masquerade, port kept
    PORT_CHANGING = "port-changing"  # endpoint-independent, WireGuard's port -> snat_port
    SYMMETRIC = "symmetric"  # a new port per destination


@dataclass
class Site:
    """One side: a host behind its NAT router."""

    label: str
    host: Host
    router: Namespace
    lan_ip: str
    gateway_ip: str
    public_ip: str
    wan_ip: str  # the wan router's address on this site's link
    nat: NatMode
    snat_port: int = SNAT_PORT
    tunnel_ip: str = ""
    # IPv6 (set on every site, used only when the lab is built with ipv6=True)
    lan_ip6: str = ""  # the host's address: routed, so also its public one
    gateway_ip6: str = ""  # the router's address on the LAN
    router_ip6: str = ""  # the router's address on the wan link
    wan_ip6: str = ""  # the wan router's address on this site's link
    lan_prefix6: str = ""

    @property
    def public_endpoint(self) -> str:
        """Where the peer reaches this site's WireGuard (port-keeping and port-changing NATs)."""
        port = self.snat_port if self.nat is NatMode.PORT_CHANGING else WG_PORT
        return f"{self.public_ip}:{port}"

    @property
    def public_endpoint6(self) -> str:
        """Where the peer reaches this site's WireGuard over IPv6 (no NAT: the LAN address)."""
        return f"[{self.lan_ip6}]:{WG_PORT}"


@dataclass
class WireGuard:
    """One WireGuard device in a lab host: a wireguard-go process, or (``process`` None) a
    kernel device (the VM tier, whose kernel has the module)."""

    site: Site
    ifname: str
    listen_port: int
    private_key: bytes = field(repr=False)
    public_key: bytes
    tunnel_ip: str
    process: asyncio.subprocess.Process | None

    @property
    def kernel(self) -> bool:
        return self.process is None

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()

    @property
    def uapi_dir(self) -> Path:
        """The host's /run/wireguard, reached from the root mount namespace (wireguard-go)."""
        assert self.process is not None, "a kernel device has no UAPI socket"
        return Path(f"/proc/{self.process.pid}/root/run/wireguard")

    async def wg(self, *args: str, input: bytes | None = None) -> str:
        return await self.site.host.run("wg", *args, input=input)

    async def add_peer(
        self, public_key: bytes, allowed_ip: str, endpoint: str | None = None
    ) -> None:
        args = [
            "set",
            self.ifname,
            "peer",
            base64.b64encode(public_key).decode(),
            "allowed-ips",
            allowed_ip,
        ]
        if endpoint:
            args += ["endpoint", endpoint]
        await self.wg(*args)

    async def stop(self, *, graceful: bool = False) -> None:
        """Stop wireguard-go (or delete the kernel device); its interface disappears with it."""
        if self.process is None:
            await self.site.host.run("ip", "link", "del", self.ifname, check=False)
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        # the tun device can outlive the process for a moment
        for _ in range(50):
            out = await self.site.host.run("ip", "-o", "link", "show", self.ifname, check=False)
            if not out.strip():
                break
            await asyncio.sleep(0.05)
        # a killed wireguard-go leaves its UAPI socket behind
        await self.site.host.run("rm", "-f", f"/run/wireguard/{self.ifname}.sock")


async def _uapi_ready(path: Path, proc: asyncio.subprocess.Process, timeout: float = 5.0) -> bool:
    """Wait until wireguard-go accepts connections on its UAPI socket."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and proc.returncode is None:
        try:
            _reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False


# IPv6 is routed, not translated: the router forwards the LAN's outbound traffic and lets in
# only what conntrack says is a reply to it — WireGuard's handshakes punch it like a NAT.
IPV6_FIREWALL = """
table ip6 firewall {
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname "pub" drop
  }
}
"""

# Cuts every IPv6 path between the sites (the wan stops forwarding IPv6); the wan itself,
# STUN server included, stays reachable, as when a transit network breaks.
IPV6_CUT = """
table ip6 labcut {
  chain forward {
    type filter hook forward priority filter - 10; policy drop;
  }
}
"""


def nat_rules(site: Site, mode: NatMode, *, ipv6: bool = False) -> str:
    """The nftables ruleset of a NAT router (docs/testbed.md), as one atomic ``nft -f`` input.

    With ``ipv6`` it also holds the router's IPv6 firewall (replies in, everything out).
    """
    if mode is NatMode.ENDPOINT_INDEPENDENT:
        snat = 'oifname "pub" masquerade'
    elif mode is NatMode.PORT_CHANGING:
        snat = (
            f'oifname "pub" udp sport {WG_PORT} snat to {site.public_ip}:{site.snat_port}\n'
            '    oifname "pub" masquerade'
        )
    else:
        snat = 'oifname "pub" masquerade random'
    # only the lab's own tables are replaced: others (a mapping router's) keep their rules
    own = ["ip nat", "inet filter", "ip6 firewall"]
    reset = "".join(f"table {t} {{}}\ndelete table {t}\n" for t in own)
    return (
        reset
        + f"""
table ip nat {{
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    {snat}
  }}
}}
table inet filter {{
  chain input {{
    type filter hook input priority filter; policy accept;
    ct state established,related accept
    iifname "pub" meta l4proto udp drop
  }}
}}
"""
        + (IPV6_FIREWALL if ipv6 else "")
    )


def lab_owners() -> dict[str, int]:
    """Lab id -> the pid of the process that built it."""
    owners = {}
    for owner in LAB_RUN_DIR.glob("*/owner"):
        with contextlib.suppress(OSError, ValueError):
            owners[owner.parent.name] = int(owner.read_text())
    return owners


async def reap_stale_labs() -> None:
    """Tear down labs whose builder died without cleaning up (killed by a timeout, say)."""
    for lab_id, pid in lab_owners().items():
        if Path(f"/proc/{pid}").exists():
            continue
        names = [
            n for n in (await run("ip", "netns", "list")).split() if n.startswith(f"smd{lab_id}-")
        ]
        for name in names:
            pids = (await run("ip", "netns", "pids", name, check=False)).split()
            for victim in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(victim), signal.SIGKILL)
        for name in names:
            mount_ns = LAB_RUN_DIR / lab_id / f"{name}.mnt"
            await run("umount", str(mount_ns), check=False)
            await run("ip", "netns", "delete", name, check=False)
        await release_mount_dir(LAB_RUN_DIR / lab_id)


class Lab(Resource):
    """Async context manager that builds, runs and tears down the two-site test bed."""

    def __init__(
        self,
        *,
        nat_a: NatMode = NatMode.PORT_CHANGING,
        nat_b: NatMode = NatMode.ENDPOINT_INDEPENDENT,
        coturn: bool = True,
        ipv6: bool = False,
    ) -> None:
        self.id = secrets.token_hex(3)
        self.ipv6 = ipv6
        prefix = f"smd{self.id}"
        self.mount_dir = LAB_RUN_DIR / self.id
        self.workdir = Path(tempfile.mkdtemp(prefix=f"stunmeshd-lab-{self.id}-"))
        self.wan = Namespace(f"{prefix}-wan")
        self.a = Site(
            "a",
            Host(f"{prefix}-hostA", self.mount_dir),
            Namespace(f"{prefix}-natA"),
            lan_ip="198.18.1.2",
            gateway_ip="198.18.1.1",
            public_ip="198.51.100.10",
            wan_ip=WAN_A_IP,
            nat=nat_a,
            tunnel_ip="198.19.0.1",
            lan_ip6="2001:db8:1::2",
            gateway_ip6="2001:db8:1::1",
            router_ip6="2001:db8:a::10",
            wan_ip6=WAN_A_IP6,
            lan_prefix6="2001:db8:1::/64",
        )
        self.b = Site(
            "b",
            Host(f"{prefix}-hostB", self.mount_dir),
            Namespace(f"{prefix}-natB"),
            lan_ip="198.18.2.2",
            gateway_ip="198.18.2.1",
            public_ip="203.0.113.20",
            wan_ip=WAN_B_IP,
            nat=nat_b,
            tunnel_ip="198.19.0.2",
            lan_ip6="2001:db8:2::2",
            gateway_ip6="2001:db8:2::1",
            router_ip6="2001:db8:b::20",
            wan_ip6=WAN_B_IP6,
            lan_prefix6="2001:db8:2::/64",
        )
        # IPv4 first; with ipv6 the v6 servers follow (the daemon resolves per family)
        self.stun_servers_v6 = (
            [f"[{WAN_A_IP6}]:{STUN_PORT}", f"[{WAN_B_IP6}]:{STUN_PORT}"] if ipv6 else []
        )
        self.stun_servers = [f"{WAN_A_IP}:{STUN_PORT}", f"{WAN_B_IP}:{STUN_PORT}"]
        self.stun_servers += self.stun_servers_v6
        self._want_coturn = coturn
        self._coturn: asyncio.subprocess.Process | None = None
        self.dht: DhtCluster | None = None
        self._processes: list[asyncio.subprocess.Process] = []
        self._namespaces: list[Namespace] = [
            self.a.host,
            self.a.router,
            self.wan,
            self.b.router,
            self.b.host,
        ]

    @property
    def sites(self) -> tuple[Site, Site]:
        return (self.a, self.b)

    async def start(self) -> None:
        await reap_stale_labs()
        await private_mount_dir(self.mount_dir)
        (self.mount_dir / "owner").write_text(f"{os.getpid()}\n")
        await asyncio.gather(*(ns.create() for ns in self._namespaces))
        if self.ipv6:
            await asyncio.gather(*(self._enable_ipv6(ns) for ns in self._namespaces))
        await self._wire()
        if self.ipv6:
            await self._wire_ipv6()
        if self._want_coturn:
            await self.start_coturn()

    async def _wire(self) -> None:
        wan = self.wan
        for site, wan_if, prefix_len in ((self.a, "siteA", 24), (self.b, "siteB", 24)):
            host, router = site.host, site.router
            await host.run(
                "ip",
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "lan",
                "netns",
                router.name,
            )
            await router.run(
                "ip",
                "link",
                "add",
                "pub",
                "type",
                "veth",
                "peer",
                "name",
                wan_if,
                "netns",
                wan.name,
            )
            await host.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.lan_ip}/24 dev eth0\n"
                    "link set eth0 up\n"
                    f"route add default via {site.gateway_ip}\n"
                ).encode(),
            )
            await router.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.gateway_ip}/24 dev lan\n"
                    f"addr add {site.public_ip}/{prefix_len} dev pub\n"
                    "link set lan up\nlink set pub up\n"
                    f"route add default via {site.wan_ip}\n"
                ).encode(),
            )
            await wan.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.wan_ip}/{prefix_len} dev {wan_if}\nlink set {wan_if} up\n"
                ).encode(),
            )
            await router.sysctl("net.ipv4.ip_forward", "1")
            await self.set_nat(site, site.nat, snat_port=site.snat_port)
        await wan.sysctl("net.ipv4.ip_forward", "1")

    async def _enable_ipv6(self, ns: Namespace) -> None:
        """IPv6 on, for the links made after this; no DAD, so addresses work at once."""
        settings = "\n".join(
            f"net.ipv6.conf.{scope}.{key} = {value}"
            for scope in ("all", "default")
            for key, value in (("disable_ipv6", 0), ("accept_dad", 0), ("accept_ra", 0))
        )
        await ns.run("sysctl", "-q", "-p-", input=(settings + "\n").encode())

    async def _wire_ipv6(self) -> None:
        """Routed IPv6 beside the IPv4 NAT: hosts' LAN addresses are their public ones."""
        wan = self.wan
        for site, wan_if in ((self.a, "siteA"), (self.b, "siteB")):
            await site.host.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.lan_ip6}/64 dev eth0 nodad\n"
                    f"route add ::/0 via {site.gateway_ip6}\n"
                ).encode(),
            )
            await site.router.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.gateway_ip6}/64 dev lan nodad\n"
                    f"addr add {site.router_ip6}/64 dev pub nodad\n"
                    f"route add ::/0 via {site.wan_ip6}\n"
                ).encode(),
            )
            await wan.run(
                "ip",
                "-batch",
                "-",
                input=(
                    f"addr add {site.wan_ip6}/64 dev {wan_if} nodad\n"
                    f"route add {site.lan_prefix6} via {site.router_ip6}\n"
                ).encode(),
            )
            await site.router.sysctl("net.ipv6.conf.all.forwarding", "1")
        await wan.sysctl("net.ipv6.conf.all.forwarding", "1")

    async def set_nat(self, site: Site, mode: NatMode, *, snat_port: int = SNAT_PORT) -> None:
        """Switch a router's NAT behaviour (and port); existing mappings stay until flushed."""
        site.nat, site.snat_port = mode, snat_port
        rules = nat_rules(site, mode, ipv6=self.ipv6)
        await site.router.run("nft", "-f", "-", input=rules.encode())

    async def start_mapping_router(
        self, site: Site, protocols: Collection[str] = ("pcp", "natpmp", "upnp")
    ) -> MappingRouter:
        """miniupnpd on the site's router (lab/miniupnpd.py), speaking only ``protocols``."""
        router = MappingRouter(self, site, protocols)
        await router.setup()
        await router.start()
        return router

    async def set_ipv6_path(self, up: bool) -> None:
        """Cut (``up=False``) or restore IPv6 forwarding between the sites in the wan.

        Only forwarding stops: each site still reaches the wan (and its STUN server) over
        IPv6, so discovery keeps finding an IPv6 endpoint that no peer can reach.
        """
        if not self.ipv6:
            raise LabError("this lab has no IPv6 (build it with Lab(ipv6=True))")
        await self.wan.run("nft", "delete", "table", "ip6", "labcut", check=False)
        if not up:
            await self.wan.run("nft", "-f", "-", input=IPV6_CUT.encode())

    async def flush_conntrack(self, site: Site) -> None:
        await site.router.run("conntrack", "-F", check=False)

    async def start_coturn(self) -> None:
        """coturn as a STUN-only server on both wan addresses (RFC 5780 OTHER-ADDRESS too)."""
        if self._coturn is not None:
            return
        self._coturn = await self.spawn(
            self.wan,
            "turnserver",
            "-n",
            "--stun-only",
            "-L",
            WAN_A_IP,
            "-L",
            WAN_B_IP,
            *(("-L", WAN_A_IP6, "-L", WAN_B_IP6) if self.ipv6 else ()),
            "-p",
            str(STUN_PORT),
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--no-cli",
            "--no-software-attribute",
            "--log-file",
            "stdout",
            "--simple-log",
            "--pidfile",
            str(self.workdir / "turnserver.pid"),
        )
        addresses = (WAN_A_IP, WAN_B_IP)
        if self.ipv6:
            addresses += (f"[{WAN_A_IP6}]", f"[{WAN_B_IP6}]")
        await self.wait_udp_listening(self.wan, STUN_PORT, addresses=addresses)

    async def start_dht(self, count: int = 3) -> list[str]:
        """A private OpenDHT network in the wan: ``count`` dhtnodes with REST proxies.

        Returns the proxy URLs as the hosts reach them (through their NATs).
        """
        if self.dht is None:
            self.dht = await start_dht_nodes(
                self.wan, count=count, host=WAN_A_IP, spawn=functools.partial(self.spawn, self.wan)
            )
        return self.dht.urls

    async def stop_coturn(self) -> None:
        if self._coturn is not None:
            await self._terminate(self._coturn)
            self._coturn = None

    async def wait_udp_listening(
        self, ns: Namespace, port: int, *, addresses: tuple[str, ...] = ("",), timeout: float = 10.0
    ) -> None:
        """Wait until something listens on udp/``port`` at each of ``addresses``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            out = await ns.run("ss", "-Hlun", f"sport = :{port}")
            if all(f"{addr}:{port}" in out for addr in addresses):
                return
            if loop.time() > deadline:
                raise LabError(f"nothing listening on udp/{port} in {ns.name}")
            await asyncio.sleep(0.02)

    async def spawn(
        self, ns: Namespace, *argv: str, log_name: str | None = None
    ) -> asyncio.subprocess.Process:
        """Start a program the lab owns (killed at teardown); its output goes to a log file."""
        log_path = self.workdir / f"{log_name or Path(argv[0]).name}-{ns.name}.log"
        with open(log_path, "ab") as log:
            proc = await ns.spawn(*argv, stdout=log, stderr=asyncio.subprocess.STDOUT)
        self._processes.append(proc)
        return proc

    async def start_wireguard(
        self,
        site: Site,
        *,
        ifname: str = "wg0",
        listen_port: int = WG_PORT,
        tunnel_ip: str | None = None,
        private_key: bytes | None = None,
        kernel: bool = False,
    ) -> WireGuard:
        """Start wireguard-go (or create a kernel device: ``kernel``) on a host with a key, a
        listen port and a tunnel address."""
        key = PrivateKey(private_key) if private_key else PrivateKey.generate()
        proc = None
        if kernel:
            await site.host.run("ip", "link", "add", ifname, "type", "wireguard")
        else:
            proc = await self.spawn(
                site.host, "wireguard-go", "-f", ifname, log_name=f"wireguard-go-{ifname}"
            )
        wg = WireGuard(
            site=site,
            ifname=ifname,
            listen_port=listen_port,
            private_key=bytes(key),
            public_key=bytes(key.public_key),
            tunnel_ip=tunnel_ip or site.tunnel_ip,
            process=proc,
        )
        if proc is not None and not await _uapi_ready(wg.uapi_dir / f"{ifname}.sock", proc):
            raise LabError(f"wireguard-go did not start in {site.host.name} (see {self.workdir})")
        key_file = self.workdir / f"{site.host.name}-{ifname}.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(bytes(key)).decode() + "\n")
        await wg.wg("set", ifname, "private-key", str(key_file), "listen-port", str(listen_port))
        key_file.unlink()
        await site.host.run(
            "ip",
            "-batch",
            "-",
            input=(f"addr add {wg.tunnel_ip}/24 dev {ifname}\nlink set {ifname} up\n").encode(),
        )
        return wg

    async def ping(self, site: Site, target: str, *, count: int = 1, wait: float = 1.0) -> bool:
        """True when at least one of ``count`` pings from the site's host is answered."""
        try:
            await site.host.run(
                "ping",
                "-n",
                "-q",
                "-c",
                str(count),
                "-W",
                str(wait),
                target,
                timeout=count * wait + 5,
            )
        except LabError:
            return False
        return True

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)

    async def close(self) -> None:
        """Tear everything down; safe to call twice and after a partial start."""
        await asyncio.gather(*(self._terminate(p) for p in self._processes), return_exceptions=True)
        self._processes.clear()
        self._coturn = None
        self.dht = None
        await asyncio.gather(*(ns.delete() for ns in self._namespaces), return_exceptions=True)
        await release_mount_dir(self.mount_dir)
        await run("rm", "-rf", str(self.workdir), check=False)
