"""Time from two stunmeshd daemons started together to their first WireGuard handshake.

Runs the lab (hostA behind a port-changing NAT, hostB behind an endpoint-independent one) N
times, fresh each time; then N times an IPv6-only pair (``protocol: ipv6``, through the site
routers' stateful IPv6 firewalls, OpenDHT reached over IPv6). stunmesh-go needs up to one
refresh interval (10 min by default) when two nodes start together; the target here is a
median of at most 2 s, for either family.
Last line: ``median_s=… p90_s=… runs=… v6_median_s=… v6_p90_s=… v6_runs=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.mesh import MeshLab


async def one_run(protocol: str = "ipv4") -> float:
    async with MeshLab(log_level="info", protocol=protocol, peer_protocol=protocol) as mesh:
        started = await mesh.start_daemons()
        seen = await mesh.wait_handshake(timeout=60, interval=0.01)
        return seen - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def series(protocol: str, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        elapsed = await one_run(protocol)
        times.append(elapsed)
        print(f"{protocol} run {i + 1}: {elapsed:.3f} s", flush=True)
    return times


async def main(runs: int, v6_runs: int) -> None:
    times = await series("ipv4", runs)
    v6_times = await series("ipv6", v6_runs) if v6_runs else []
    line = f"median_s={statistics.median(times):.3f} p90_s={percentile(times, 0.9):.3f} runs={runs}"
    if v6_times:
        line += (
            f" v6_median_s={statistics.median(v6_times):.3f}"
            f" v6_p90_s={percentile(v6_times, 0.9):.3f} v6_runs={v6_runs}"
        )
    print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--v6-runs", type=int, help="IPv6-only runs (default: --runs; 0: none)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.runs if args.v6_runs is None else args.v6_runs))
