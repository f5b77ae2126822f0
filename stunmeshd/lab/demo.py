"""``make demo``: two hosts behind NAT find each other with stunmeshd, shown as it happens.

Builds the lab (network namespaces only, nothing touches the host's network), starts one
stunmeshd per host at the same moment, prints what each daemon does — discovered endpoint,
publish, fetch, apply, handshake — then pings through the tunnel and tears everything down
(also on Ctrl-C or failure).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.picture import topology_picture
from stunmeshd.lab.sysbus import PrivateBus
from stunmeshd.lab.topology import NatMode

# log messages worth showing, and how to say them
SHOWN = (
    ("public endpoint", "discovered"),
    ("NAT mapping is", "NAT"),
    ("port mapped", "port mapped"),
    ("publishing ", "publish from"),
    ("published", "published"),
    ("no record yet", "fetch"),
    ("endpoint applied", "applied"),
    ("handshake", "handshake"),
    ("record refused", "refused"),
    ("no handshake", "problem"),
    ("failed", "problem"),
)
HOLD = 0.4  # s: lines wait this long so that later-read earlier events sort before them
# key=value pairs; a value runs until the next " key=" (reasons contain spaces)
_PAIR = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")


def fields_of(msg: str) -> str:
    """The key=value part of a log message, minus what the demo already says; values whole."""
    pairs = [(k, v) for k, v in _PAIR.findall(msg) if k not in ("iface", "key")]
    return " ".join(f"{k}={v}" for k, v in pairs)


def use_color(stream: Any, env: Mapping[str, str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return bool(stream.isatty()) and not env.get("NO_COLOR")


def clock(at: float) -> str:
    """Wall-clock time of day, local, to the millisecond: what a person compares with logs."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def human_value(value: Any) -> str:
    """A monitor JSON value for people: RFC 3339 times as local clock times, lists joined."""
    if isinstance(value, str) and value.endswith("Z") and value[:4].isdigit():
        try:
            return clock(datetime.fromisoformat(value).timestamp())
        except ValueError:
            return value
    if isinstance(value, list):
        return ",".join(human_value(v) for v in value) or "[]"
    if value is None:
        return "never"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def monitor_line(event: dict[str, Any]) -> str:
    """One ``stunmeshctl monitor --json`` event as a short line."""
    if event.get("signal") == "PropertiesChanged":
        changes = event.get("changes", {})
        text = " ".join(f"{k}={human_value(v)}" for k, v in sorted(changes.items()))
    else:
        text = str(event.get("text", ""))
    return f"{event.get('object')}: {event.get('signal')}{' ' if text else ''}{text}"


class Narrator:
    """Collects both daemons' log lines and both buses' signals; prints them in time order."""

    def __init__(self, mesh: MeshLab, started: float, color: bool) -> None:
        self.mesh, self.started, self.color = mesh, started, color
        self.seen: dict[str, int] = {}
        self.pending: list[tuple[float, int, str, str, str]] = []
        self.order = itertools.count()

    def add(self, who: str, what: str, detail: str = "", at: float | None = None) -> None:
        """Queue one event; ``at`` is its wall-clock time (default: now)."""
        stamp = at if at is not None else time.time()
        heapq.heappush(self.pending, (stamp, next(self.order), who, what, detail))

    def say(self, who: str, what: str, detail: str = "") -> None:
        """An event happening now: everything before it is printed first."""
        self.poll()
        self.add(who, what, detail)
        self.flush(hold=0.0)

    def flush(self, hold: float = HOLD) -> None:
        """Print the events older than ``hold`` seconds, oldest first."""
        limit = time.time() - hold
        while self.pending and self.pending[0][0] <= limit:
            at, _, who, what, detail = heapq.heappop(self.pending)
            self.print(at, who, what, detail)

    def print(self, at: float, who: str, what: str, detail: str) -> None:
        tag = f"[{who}]"
        if self.color:
            tag = f"\033[{'36' if who == 'A' else '35' if who == 'B' else '1'}m{tag}\033[0m"
        elapsed = max(at - self.started, 0.0)
        print(f"{clock(at)} +{elapsed:5.2f}s {tag:>5} {what:<14} {detail}", flush=True)

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
                    self.add(
                        node.label.upper(), f"log {what}", fields_of(msg) or msg, entry.get("ts")
                    )
                    break


async def follow_monitor(proc: asyncio.subprocess.Process, who: str, narrator: Narrator) -> None:
    """Queue what ``stunmeshctl monitor --json`` sees on a host's bus, one line per signal."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        try:
            event = json.loads(raw)
            at = datetime.fromisoformat(event["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        narrator.add(who, "bus", monitor_line(event), at)


async def demo(
    nat_a: NatMode, nat_b: NatMode, color: bool, mapping_router: tuple[str, ...] = ()
) -> int:
    async with PrivateBus() as bus_a, PrivateBus() as bus_b:
        await asyncio.gather(bus_a.start_polkit(), bus_b.start_polkit())
        return await demo_on(nat_a, nat_b, color, {"a": bus_a, "b": bus_b}, mapping_router)


async def demo_on(
    nat_a: NatMode,
    nat_b: NatMode,
    color: bool,
    buses: dict[str, PrivateBus],
    mapping_router: tuple[str, ...] = (),
) -> int:
    print("stunmeshd demo: two hosts behind NAT find each other (network namespaces only)\n")
    async with MeshLab(nat_a=nat_a, nat_b=nat_b) as mesh:
        if mapping_router:  # natA maps ports: miniupnpd (lab/miniupnpd.py)
            await mesh.lab.start_mapping_router(mesh.lab.a, mapping_router)
            print(f"natA runs miniupnpd offering {', '.join(mapping_router)}\n")
        print(topology_picture(mesh.lab, store="OpenDHT (3 dhtnodes) :8080-8082"))
        print(
            "\nWireGuard: wireguard-go. Each host has its own system bus (with polkitd) and "
            "`stunmeshctl monitor` on it.\n"
            "[X] log: what the daemon on host X does; [X] bus: what a client sees on its bus.\n"
            "Times are local; +s counts from the start. Both daemons start now; neither knows "
            "where the other is.\n"
        )
        narrator = Narrator(mesh, time.time(), color)
        monitors = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stunmeshd.ctl",
                "--bus",
                buses[label].address,
                "monitor",
                "--json",
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
            narrator.poll()
            narrator.flush(hold=0.0)
            print("tearing the lab down")


async def watch_tunnel(mesh: MeshLab, narrator: Narrator, started: float) -> int:
    """Narrate until both WireGuards have a handshake, then ping through the tunnel."""
    connected_at = None
    deadline = started + 30
    while time.monotonic() < deadline:
        narrator.poll()
        narrator.flush()
        stamps = await asyncio.gather(*(n.latest_handshake() for n in mesh.nodes.values()))
        if all(stamps):
            connected_at, up_at = time.monotonic(), time.time()
            await asyncio.sleep(HOLD)  # what happened before it reaches us, then it is printed
            narrator.poll()
            narrator.add("A+B", "tunnel up", "WireGuard handshake complete", up_at)
            narrator.flush(hold=0.0)
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
    parser.add_argument(
        "--mapping-router",
        metavar="PROTOCOLS",
        help="natA maps ports (miniupnpd) with these, comma-separated: pcp,natpmp,upnp",
    )
    args = parser.parse_args(argv)
    router = tuple(p for p in (args.mapping_router or "").split(",") if p)
    if set(router) - {"pcp", "natpmp", "upnp"}:
        parser.error("--mapping-router takes pcp, natpmp and/or upnp")
    try:
        color = use_color(sys.stdout, os.environ)
        return asyncio.run(demo(NatMode(args.nat_a), NatMode(args.nat_b), color, router))
    except KeyboardInterrupt:
        print("\ninterrupted; the lab was torn down")
        return 130


if __name__ == "__main__":
    sys.exit(main())
