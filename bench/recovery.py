"""Recovery without restarts: NAT re-mapping and a WireGuard restart, timed to the first ping.

Two lab hosts connected by their daemons (default settings, the lab's OpenDHT store); a ping
runs through the tunnel from hostA every 0.1 s. Each run then either
* re-maps hostA's NAT (snat port 40000 -> 40001 -> …, conntrack flushed), or
* kills hostA's wireguard-go and starts a new one on a new listen port (same key and peer),
and measures from that moment to the first ping reply through the tunnel.
Targets: ≤ 5 s each.
Last line: ``remap_median_s=… remap_p90_s=… restart_median_s=… restart_p90_s=…``.
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


async def remap_runs(runs: int) -> list[float]:
    times = []
    async with MeshLab(nat_a=NatMode.PORT_CHANGING, log_level="info") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        pinger = Pinger()
        await pinger.start(mesh)
        try:
            await pinger.first_reply_after(time.time() - SETTLE)
            for i in range(runs):
                await asyncio.sleep(3)  # steady state
                moment = time.time()
                await mesh.lab.set_nat(mesh.a.site, NatMode.PORT_CHANGING, snat_port=40001 + i)
                await mesh.lab.flush_conntrack(mesh.a.site)
                took = await pinger.first_reply_after(moment)
                times.append(took)
                print(f"remap {i + 1}: {took:.2f} s", flush=True)
        finally:
            await pinger.stop()
    return times


async def restart_runs(runs: int) -> list[float]:
    times = []
    async with MeshLab(log_level="info") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        pinger = Pinger()
        await pinger.start(mesh)
        a, b = mesh.a, mesh.b
        try:
            await pinger.first_reply_after(time.time() - SETTLE)
            for i in range(runs):
                await asyncio.sleep(3)
                moment = time.time()
                await a.wg.stop()
                a.wg = await mesh.lab.start_wireguard(
                    a.site, listen_port=51821 + i, private_key=a.wg.private_key
                )
                await a.wg.add_peer(b.wg.public_key, f"{b.wg.tunnel_ip}/32")
                took = await pinger.first_reply_after(moment)
                times.append(took)
                print(f"restart {i + 1}: {took:.2f} s", flush=True)
        finally:
            await pinger.stop()
    return times


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def main(runs: int) -> None:
    remap = await remap_runs(runs)
    restart = await restart_runs(runs)
    print(
        f"remap_median_s={statistics.median(remap):.2f} remap_p90_s={p90(remap):.2f} "
        f"restart_median_s={statistics.median(restart):.2f} restart_p90_s={p90(restart):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
