"""Two stunmeshd daemons in the lab: one per host, wireguard-go on each, a shared store.

This is the product's whole job on one machine: the end-to-end tests, the convergence
benchmark and ``make demo`` all run it.

``protocol`` (the interfaces') and ``peer_protocol`` (each peer's) are the config's; any IPv6
in them builds the lab dual stack (``Lab(ipv6=True)``). With ``protocol="ipv6"`` the hosts
also reach the OpenDHT proxies over IPv6, so an IPv6-only pair uses no IPv4 at all.

``kernel`` names the sites whose WireGuard is a kernel device instead of wireguard-go (only
where the kernel has the module: the VM tier).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stunmeshd.lab.resource import Resource
from stunmeshd.lab.topology import WAN_A_IP, WAN_A_IP6, Lab, NatMode, Site, WireGuard
from stunmeshd.wireguard.netlink import NetlinkBackend
from stunmeshd.wireguard.uapi import UapiBackend

REPO = Path(__file__).resolve().parents[2]
DIRSTORE = REPO / "examples" / "plugins" / "dirstore.sh"


@dataclass
class Node:
    """One lab host running WireGuard and (when started) stunmeshd."""

    site: Site
    wg: WireGuard
    config_path: Path
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.site.label

    def log_lines(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far."""
        entries = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log_path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        return entries

    def log_text(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    async def latest_handshake(self) -> float:
        """Unix seconds of the newest handshake with any peer (as WireGuard stamped it, to the
        nanosecond), 0 when none.

        Asked over wireguard-go's UAPI socket, or the kernel's generic netlink from a thread
        in the host's namespace: neither costs a process, so a waiter polling every few
        milliseconds does not eat the CPU the daemons it times start up on, and both kinds of
        WireGuard cost the waiter alike (bench/kernel_wg.py compares them).
        """
        if self.wg.kernel:
            backend = NetlinkBackend()
            info = await self.site.host.call(backend.read_device, self.wg.ifname)
        else:
            info = await UapiBackend(self.wg.uapi_dir).read_device(self.wg.ifname)
        return max((peer.latest_handshake for peer in info.peers.values()), default=0.0)

    async def peer_endpoint(self) -> str:
        out = await self.site.host.run("wg", "show", self.wg.ifname, "endpoints")
        parts = out.split()
        return parts[1] if len(parts) > 1 and parts[1] != "(none)" else ""


class MeshLab(Resource):
    """A Lab with WireGuard peered on both hosts and a stunmeshd config for each."""

    def __init__(
        self,
        *,
        nat_a: NatMode = NatMode.PORT_CHANGING,
        nat_b: NatMode = NatMode.ENDPOINT_INDEPENDENT,
        stun_servers: Sequence[str] | None = None,
        log_level: str = "debug",
        refresh_interval: str = "10m",
        store: str = "opendht",
        keys: dict[str, bytes] | None = None,
        protocol: str = "ipv4",
        peer_protocol: str = "ipv4",
        ipv6: bool | None = None,
        kernel: Sequence[str] = (),
    ) -> None:
        if ipv6 is None:
            ipv6 = "ipv6" in protocol or "dualstack" in protocol or "ipv6" in peer_protocol
        self.lab = Lab(nat_a=nat_a, nat_b=nat_b, ipv6=ipv6)
        self.protocol = protocol
        self.peer_protocol = peer_protocol
        self._stun_servers = stun_servers
        self.log_level = log_level
        self.refresh_interval = refresh_interval
        self.store_kind = store
        self.keys = keys or {}
        self.kernel = frozenset(kernel)  # labels of the sites with kernel WireGuard
        self.nodes: dict[str, Node] = {}
        self.store_dir = self.lab.workdir / "records"
        self.dht_urls: list[str] = []

    @property
    def a(self) -> Node:
        return self.nodes["a"]

    @property
    def b(self) -> Node:
        return self.nodes["b"]

    async def start(self) -> None:
        await self.lab.start()
        await self.setup()

    async def setup(self) -> None:
        self.store_dir.mkdir(mode=0o700, exist_ok=True)
        if self.store_kind == "opendht":
            self.dht_urls = await self.lab.start_dht()
            if self.protocol == "ipv6":  # the proxies listen on every address
                self.dht_urls = [
                    url.replace(f"//{WAN_A_IP}:", f"//[{WAN_A_IP6}]:") for url in self.dht_urls
                ]
        wgs = await asyncio.gather(
            *(
                self.lab.start_wireguard(
                    s, private_key=self.keys.get(s.label), kernel=s.label in self.kernel
                )
                for s in self.lab.sites
            )
        )
        for site, wg in zip(self.lab.sites, wgs, strict=True):
            self.nodes[site.label] = Node(
                site=site,
                wg=wg,
                config_path=self.lab.workdir / f"stunmeshd-{site.label}.yaml",
                log_path=self.lab.workdir / f"stunmeshd-{site.label}.log",
            )
        # each device knows its peer's key and tunnel address, not where it is
        await self.a.wg.add_peer(self.b.wg.public_key, f"{self.b.wg.tunnel_ip}/32")
        await self.b.wg.add_peer(self.a.wg.public_key, f"{self.a.wg.tunnel_ip}/32")
        for node, other in ((self.a, self.b), (self.a, self.b)[::-1]):
            self.write_config(node, self.config_for(node, other))

    @property
    def stun_servers(self) -> list[str]:
        return list(self._stun_servers or self.lab.stun_servers)

    def store_plugin(self) -> dict[str, Any]:
        """The ``lab`` plugin: OpenDHT through the wan's proxies, or the directory store."""
        if self.store_kind == "opendht":
            return {
                "type": "builtin",
                "name": "opendht",
                "endpoints": self.dht_urls,
                "timeout": "5s",
            }
        return {
            "type": "shell",
            "command": str(DIRSTORE),
            "args": [str(self.store_dir)],
            "timeout": "5s",
        }

    def config_for(
        self,
        node: Node,
        other: Node,
        *,
        protocol: str | None = None,
        peer_protocol: str | None = None,
        **peer_extra: Any,
    ) -> dict[str, Any]:
        """``node``'s config with ``other`` as its one peer.

        ``protocol``/``peer_protocol`` override the lab's for this node; ``peer_extra`` adds
        peer keys (``ping={...}``, ``description=...``).
        """
        return {
            "refresh_interval": self.refresh_interval,
            "log": {"level": self.log_level, "format": "json"},
            "stun": {"addresses": self.stun_servers},
            "interfaces": {
                node.wg.ifname: {
                    "protocol": protocol or self.protocol,
                    "peers": {
                        f"host{other.label.upper()}": {
                            "public_key": other.wg.public_key_b64,
                            "plugin": "lab",
                            "protocol": peer_protocol or self.peer_protocol,
                            **peer_extra,
                        }
                    },
                }
            },
            "plugins": {"lab": self.store_plugin()},
        }

    def write_config(self, node: Node, config: dict[str, Any]) -> None:
        node.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    async def start_daemon(self, node: Node, *args: str) -> asyncio.subprocess.Process:
        log = node.log_path.open("ab")
        try:
            node.process = await node.site.host.spawn(
                sys.executable,
                "-m",
                "stunmeshd",
                "-c",
                str(node.config_path),
                *args,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        return node.process

    async def start_daemons(self, *args: str) -> float:
        """Start both daemons together; returns the loop time they were started at."""
        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(self.start_daemon(n, *args) for n in self.nodes.values()))
        return started

    async def stop_daemon(self, node: Node) -> int | None:
        proc = node.process
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    async def wait_handshake(self, timeout: float = 20.0, interval: float = 0.05) -> float:
        """Wait until both WireGuards report a handshake; returns the loop time it was seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            stamps = await asyncio.gather(*(n.latest_handshake() for n in self.nodes.values()))
            if all(stamps):
                return loop.time()
            await asyncio.sleep(interval)
        raise TimeoutError(f"no handshake within {timeout} s")

    async def wait_log(
        self, node: Node, text: str, timeout: float = 20.0, *, after: int = 0
    ) -> dict[str, Any]:
        """Wait for a JSON log line of ``node`` whose message contains ``text``; ``after``:
        skip the first that many lines (``len(node.log_lines())`` before an event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in node.log_lines()[after:]:
                if text in entry.get("msg", ""):
                    return entry
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{node.label}: no log line with {text!r} within {timeout} s")

    def record_path(self, writer: Node, reader: Node) -> Path:
        """Where the directory store keeps the record ``writer`` publishes for ``reader``."""
        assert self.store_kind == "dir", "records are files only with the directory store"
        from stunmeshd.crypto import publish_key

        return self.store_dir / publish_key(writer.wg.public_key, reader.wg.public_key)

    async def close(self) -> None:
        await asyncio.gather(
            *(self.stop_daemon(n) for n in self.nodes.values()), return_exceptions=True
        )
        await self.lab.close()


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()
