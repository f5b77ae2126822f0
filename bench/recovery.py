"""Recovery without restarts, timed to the first ping through the tunnel after the event.

Two lab hosts connected by their daemons (default settings, the lab's OpenDHT store); a ping
runs through the tunnel from hostA every 0.1 s. Cases (each ``--runs`` times, one lab each):
* ``remap``: hostA's NAT re-maps (snat port 40000 -> 40001 -> …, conntrack flushed);
* ``restart``: hostA's wireguard-go is killed and a new one starts on a new listen port
  (same key and peer);
* ``port_a`` / ``port_b``: ``wg set wg0 listen-port N`` on hostA / hostB, both daemons and
  WireGuards running (nothing restarts);
* ``recreate``: ``ip link del wg0`` on hostA, then wg0 is made again with the same key, port
  and peer, as an administrator would; ``recreate_late_peer`` adds the peer only after the
  daemon has read the new wg0 without it.
Each measures from the event to the first ping reply. Targets: ≤ 5 s for remap and restart,
≤ 3 s for the others.
Last line: ``<case>_median_s=… <case>_p90_s=… …`` for every case run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.topology import NatMode

REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")
SETTLE = 0.5  # s: replies stamped this soon after the event were in flight before it


class Pinger:
    """A continuous ``ping -D`` through the tunnel; remembers when replies arrived."""

    def __init__(self) -> None:
        self.replies: list[float] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, mesh: MeshLab) -> None:
        self.proc = await mesh.a.site.host.spawn(
            "ping",
            "-n",
            "-D",
            "-i",
            "0.1",
            "-W",
            "1",
            mesh.b.wg.tunnel_ip,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            match = REPLY.match(raw.decode(errors="replace"))
            if match:
                self.replies.append(float(match.group(1)))

    async def first_reply_after(self, moment: float, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [t for t in self.replies if t > moment + SETTLE]
            if later:
                return later[0] - moment
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no ping reply within {timeout} s")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class Scenario:
    """Two connected daemons and the pinger; ``event(mesh, i)`` disturbs run ``i``."""

    nat_a = NatMode.PORT_CHANGING

    async def event(self, mesh: MeshLab, i: int) -> None:
        raise NotImplementedError

    async def runs(self, name: str, runs: int) -> list[float]:
        times = []
        async with MeshLab(nat_a=self.nat_a, log_level="info") as mesh:
            await mesh.start_daemons()
            await mesh.wait_handshake()
            pinger = Pinger()
            await pinger.start(mesh)
            try:
                await pinger.first_reply_after(time.time() - SETTLE)
                for i in range(runs):
                    await asyncio.sleep(3)  # steady state
                    moment = time.time()
                    await self.event(mesh, i)
                    took = await pinger.first_reply_after(moment)
                    times.append(took)
                    print(f"{name} {i + 1}: {took:.2f} s", flush=True)
            finally:
                await pinger.stop()
        return times


class Remap(Scenario):
    async def event(self, mesh: MeshLab, i: int) -> None:
        await mesh.lab.set_nat(mesh.a.site, NatMode.PORT_CHANGING, snat_port=40001 + i)
        await mesh.lab.flush_conntrack(mesh.a.site)


class Restart(Scenario):
    async def event(self, mesh: MeshLab, i: int) -> None:
        a, b = mesh.a, mesh.b
        await a.wg.stop()
        a.wg = await mesh.lab.start_wireguard(
            a.site, listen_port=51821 + i, private_key=a.wg.private_key
        )
        await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")


class PortChange(Scenario):
    def __init__(self, side: str) -> None:
        self.side = side

    async def event(self, mesh: MeshLab, i: int) -> None:
        node = mesh.nodes[self.side]
        await node.wg.wg("set", node.wg.ifname, "listen-port", str(51831 + i))


class Recreate(Scenario):
    """``late_peer``: the peer is added only after the daemon read the new wg0 without it
    (the cause of a one-off 60 s recovery: nothing announces a peer's arrival)."""

    def __init__(self, *, late_peer: bool = False) -> None:
        self.late_peer = late_peer

    async def event(self, mesh: MeshLab, i: int) -> None:
        a, b = mesh.a, mesh.b
        port = a.wg.listen_port
        adopted = len(a.log_lines())
        await a.site.host.run("ip", "link", "del", a.wg.ifname)  # wireguard-go exits with it
        await a.wg.stop()
        a.wg = await mesh.lab.start_wireguard(
            a.site, listen_port=port, private_key=a.wg.private_key
        )
        if self.late_peer:
            await mesh.wait_log(a, "device adopted", after=adopted)
        await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")


CASES: dict[str, Scenario] = {
    "remap": Remap(),
    "restart": Restart(),
    "port_a": PortChange("a"),
    "port_b": PortChange("b"),
    "recreate": Recreate(),
    "recreate_late_peer": Recreate(late_peer=True),
}


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def main(runs: int, cases: list[str]) -> None:
    figures = []
    for name in cases:
        times = await CASES[name].runs(name, runs)
        figures.append(
            f"{name}_median_s={statistics.median(times):.2f} {name}_p90_s={p90(times):.2f}"
        )
    print(" ".join(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--cases", nargs="+", choices=list(CASES), default=list(CASES), help="default: all"
    )
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.cases))
