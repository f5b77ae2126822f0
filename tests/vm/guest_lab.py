"""INSIDE the VM: the lab (network namespaces) with kernel WireGuard, host A's stunmeshd being
the installed unit started by systemd inside A's namespace (a NetworkNamespacePath= drop-in),
host B's a lab daemon on a private bus. Through the lab's NATs, coturn and OpenDHT network."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator

import yaml

from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.sysbus import PrivateBus
from stunmeshd.lab.topology import NatMode
from tests.vm.guest import (
    CONFIG,
    UNIT,
    device_property,
    ensure_installed,
    remove_dropin,
    sh,
    unit_property,
    wait_for,
    write_dropin,
)

B_PUBLIC = "203.0.113.20:51820"  # B behind its endpoint-independent NAT


@contextlib.asynccontextmanager
async def systemd_daemon(mesh: MeshLab, node: Node, other: Node) -> AsyncIterator[None]:
    """``node``'s stunmeshd: the installed unit, in ``node``'s network namespace."""
    await asyncio.to_thread(ensure_installed)
    config = mesh.config_for(node, other)
    config["log"] = {"level": "debug", "format": "console"}
    CONFIG.parent.mkdir(mode=0o700, exist_ok=True)
    CONFIG.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(CONFIG, 0o600)
    netns = f"/run/netns/{node.site.host.name}"
    write_dropin("lab-netns", f"[Service]\nNetworkNamespacePath={netns}\n")
    try:
        await asyncio.to_thread(sh, "systemctl", "start", UNIT)
        yield
    finally:
        journal = sh("journalctl", "-b", "-u", UNIT, "-o", "cat", "-n", "80", check=False)
        print(f"--- journal of {UNIT} ---\n{journal.stdout}")
        sh("systemctl", "stop", UNIT, check=False)
        remove_dropin("lab-netns")


async def property_becomes(ifname: str, name: str, value: object, timeout: float = 60) -> None:
    await asyncio.to_thread(
        wait_for,
        f"{ifname} {name} = {value!r}",
        lambda: device_property(ifname, name) == value,
        timeout,
    )


async def pings(mesh: MeshLab, timeout: float = 60) -> None:
    """A's pings reach B through the tunnel (retried: a re-handshake may be under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=2):
            return
    raise AssertionError(f"no ping through the tunnel within {timeout}s")


async def test_kernel_wireguard_on_both_hosts_forms_the_tunnel() -> None:
    async with PrivateBus() as bus, MeshLab(kernel=("a", "b")) as mesh:
        async with systemd_daemon(mesh, mesh.a, mesh.b):
            await mesh.start_daemon(mesh.b, "--bus", bus.address)
            await mesh.wait_handshake(timeout=90, interval=0.5)
            await pings(mesh)
            assert await mesh.a.peer_endpoint() == B_PUBLIC
            assert await mesh.b.peer_endpoint() == "198.51.100.10:40000"  # A's NAT moves ports
            assert device_property("wg0", "Backend") == "kernel"
            assert "wireguard" in await mesh.b.site.host.run("ip", "-d", "link", "show", "wg0")


async def test_kernel_and_wireguard_go_form_the_tunnel() -> None:
    async with PrivateBus() as bus, MeshLab(kernel=("a",)) as mesh:
        assert mesh.b.wg.process is not None  # B runs wireguard-go
        async with systemd_daemon(mesh, mesh.a, mesh.b):
            await mesh.start_daemon(mesh.b, "--bus", bus.address)
            await mesh.wait_handshake(timeout=90, interval=0.5)
            await pings(mesh)
            assert device_property("wg0", "Backend") == "kernel"


async def test_netlink_changes_are_followed_without_a_restart() -> None:
    """Listen port, fwmark, and the device deleted and re-created (on a new port, without
    an endpoint): the running daemon follows each, and the tunnel comes back."""
    async with (
        PrivateBus() as bus,
        MeshLab(kernel=("a", "b"), nat_a=NatMode.ENDPOINT_INDEPENDENT) as mesh,
    ):
        host = mesh.a.site.host
        async with systemd_daemon(mesh, mesh.a, mesh.b):
            await mesh.start_daemon(mesh.b, "--bus", bus.address)
            await mesh.wait_handshake(timeout=90, interval=0.5)
            pid = unit_property("MainPID")

            await host.run("wg", "set", "wg0", "listen-port", "51821")
            await property_becomes("wg0", "ListenPort", 51821)
            await pings(mesh)

            await host.run("wg", "set", "wg0", "fwmark", "0x42")
            await property_becomes("wg0", "FwMark", 0x42)

            ifindex = device_property("wg0", "Ifindex")
            await host.run("ip", "link", "del", "wg0")
            recreated = time.time()
            key = base64.b64encode(mesh.a.wg.private_key).decode()
            await host.run("ip", "link", "add", "wg0", "type", "wireguard")
            await host.run(
                "wg", "set", "wg0", "private-key", "/dev/stdin", "listen-port", "51830",
                "peer", mesh.b.wg.public_key_b64, "allowed-ips", f"{mesh.b.wg.tunnel_ip}/32",
                input=key.encode(),
            )  # fmt: skip
            await host.run("ip", "addr", "add", f"{mesh.a.wg.tunnel_ip}/24", "dev", "wg0")
            await host.run("ip", "link", "set", "wg0", "up")
            await asyncio.to_thread(
                wait_for,
                "the re-created wg0 on the bus",
                lambda: device_property("wg0", "Ifindex") not in (ifindex, 0),
            )
            await property_becomes("wg0", "ListenPort", 51830)
            deadline = time.monotonic() + 90
            while await mesh.a.latest_handshake() < int(recreated):
                assert time.monotonic() < deadline, "no handshake on the re-created device"
                await asyncio.sleep(0.5)
            await pings(mesh)
            assert await mesh.a.peer_endpoint() == B_PUBLIC
            assert unit_property("MainPID") == pid
            assert unit_property("NRestarts") == "0"
