"""``make demo``: two hosts behind NAT find each other with stunmeshd, shown as it happens.

Builds the lab (network namespaces only, nothing touches the host's network), starts one
stunmeshd per host at the same moment, prints what each daemon does — discovered endpoint,
publish, fetch, apply, handshake — then pings through the tunnel and tears everything down
(also on Ctrl-C or failure).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.sysbus import PrivateBus
from stunmeshd.lab.topology import NatMode

# log messages worth showing, and how to say them
SHOWN = (
    ("public endpoint", "discovered"),
    ("NAT mapping is", "NAT"),
    ("published", "published"),
    ("no record yet", "fetch"),
    ("endpoint applied", "applied"),
    ("handshake", "handshake"),
    ("record refused", "refused"),
    ("no handshake", "problem"),
    ("failed", "problem"),
)


def _fields(msg: str) -> str:
    """The key=value part of a log message, minus what the demo already says."""
    parts = [p for p in msg.split() if "=" in p and not p.startswith(("iface=", "key="))]
    return " ".join(parts)


class Narrator:
    """Follows both daemons' JSON logs and prints the interesting lines once each."""

    def __init__(self, mesh: MeshLab, started: float, color: bool) -> None:
        self.mesh, self.started, self.color = mesh, started, color
        self.seen: dict[str, int] = {}

    def say(self, who: str, what: str, detail: str = "", at: float | None = None) -> None:
        """Print one event; ``at`` is its wall-clock time (default: now)."""
        elapsed = (at if at is not None else time.time()) - self.started
        tag = f"[{who}]"
        if self.color:
            tag = f"\033[{'36' if who == 'A' else '35' if who == 'B' else '1'}m{tag}\033[0m"
        print(f"{elapsed:6.2f}s {tag:>5} {what:<15} {detail}", flush=True)

    def poll(self) -> None:
        for node in self.mesh.nodes.values():
            self._poll_node(node)

    def _poll_node(self, node: Node) -> None:
        lines = node.log_lines()
        start = self.seen.get(node.label, 0)
        self.seen[node.label] = len(lines)
        for entry in lines[start:]:
            msg = entry.get("msg", "")
            for needle, what in SHOWN:
                if msg.startswith(needle) or (needle in msg and what == "problem"):
                    self.say(
                        node.label.upper(), f"log {what}", _fields(msg) or msg, entry.get("ts")
                    )
                    break


async def follow_monitor(proc: asyncio.subprocess.Process, who: str, narrator: Narrator) -> None:
    """Print what ``stunmeshctl monitor`` sees on a host's bus, one line per signal."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        parts = line.split(maxsplit=1)  # drop its own timestamp: the narrator prints one
        if len(parts) == 2 and parts[0][:4].isdigit():
            line = parts[1]
        narrator.say(who, "bus", line)


async def demo(nat_a: NatMode, nat_b: NatMode, color: bool) -> int:
    async with PrivateBus() as bus_a, PrivateBus() as bus_b:
        await asyncio.gather(bus_a.start_polkit(), bus_b.start_polkit())
        return await demo_on(nat_a, nat_b, color, {"a": bus_a, "b": bus_b})


async def demo_on(nat_a: NatMode, nat_b: NatMode, color: bool, buses: dict[str, PrivateBus]) -> int:
    print("stunmeshd demo: hostA ── natA ── wan (coturn, OpenDHT) ── natB ── hostB")
    print(
        f"  natA: {nat_a}, natB: {nat_b}; WireGuard: wireguard-go; "
        "store: a private OpenDHT network (3 dhtnodes)"
    )
    async with MeshLab(nat_a=nat_a, nat_b=nat_b) as mesh:
        print(
            f"  hostA {mesh.a.site.lan_ip} (public {mesh.a.site.public_ip}), "
            f"hostB {mesh.b.site.lan_ip} (public {mesh.b.site.public_ip})"
        )
        print("  each host has its own system bus (with polkitd) and `stunmeshctl monitor` on it")
        print("  [X] log: what the daemon on host X does; [X] bus: what a client sees on its bus")
        print("  both daemons start now; neither knows where the other is.\n")
        narrator = Narrator(mesh, time.time(), color)
        monitors = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stunmeshd.ctl",
                "--bus",
                buses[label].address,
                "monitor",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for label in ("a", "b")
        ]
        followers = [
            asyncio.create_task(follow_monitor(m, who, narrator))
            for m, who in zip(monitors, ("A", "B"), strict=True)
        ]
        await asyncio.sleep(0.5)  # the monitors subscribe before the daemons start
        narrator.started = time.time()
        started = time.monotonic()
        await asyncio.gather(
            *(
                mesh.start_daemon(node, "--bus", buses[label].address)
                for label, node in mesh.nodes.items()
            )
        )
        try:
            return await watch_tunnel(mesh, narrator, started)
        finally:
            await asyncio.sleep(0.3)  # the last signals
            for monitor in monitors:
                monitor.terminate()
            await asyncio.gather(*followers, return_exceptions=True)
            await asyncio.gather(*(m.wait() for m in monitors))
            print("tearing the lab down")


async def watch_tunnel(mesh: MeshLab, narrator: Narrator, started: float) -> int:
    """Narrate until both WireGuards have a handshake, then ping through the tunnel."""
    connected_at = None
    deadline = started + 30
    while time.monotonic() < deadline:
        narrator.poll()
        stamps = await asyncio.gather(*(n.latest_handshake() for n in mesh.nodes.values()))
        if all(stamps):
            connected_at = time.monotonic()
            narrator.poll()
            narrator.say("A+B", "tunnel up", "WireGuard handshake complete")
            break
        await asyncio.sleep(0.05)
    if connected_at is None:
        narrator.poll()
        narrator.say("!", "no tunnel", "no handshake within 30 s (see the lines above)")
        return 1
    ok = await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
    narrator.say(
        "A",
        "ping",
        f"{mesh.b.wg.tunnel_ip} through the tunnel: {'replies' if ok else 'NO REPLY'}",
    )
    print(f"\nfrom both daemons started to first handshake: {connected_at - started:.2f} s")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stunmeshd-demo", description=__doc__)
    choices = [m.value for m in NatMode]
    parser.add_argument("--nat-a", choices=choices, default=NatMode.PORT_CHANGING.value)
    parser.add_argument("--nat-b", choices=choices, default=NatMode.ENDPOINT_INDEPENDENT.value)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(demo(NatMode(args.nat_a), NatMode(args.nat_b), sys.stdout.isatty()))
    except KeyboardInterrupt:
        print("\ninterrupted; the lab was torn down")
        return 130


if __name__ == "__main__":
    sys.exit(main())
