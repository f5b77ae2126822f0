"""Time from two stunmeshd daemons started together to their first handshake, with hostA
behind a symmetric NAT whose router maps ports (miniupnpd on natA; issue 14).

Without the mapping this pair never connects (tests/e2e/test_portmap_mesh.py's control).
First N runs with the router offering all three protocols (hostA's ``port_mapping: auto``
takes whichever answers first), then N runs per protocol with the router offering it alone.
Goal: a median of at most 3 s.
Last line: ``protocol=auto converge_median_s=… runs=… pcp_median_s=… natpmp_median_s=…
upnp_median_s=… per_protocol_runs=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.topology import NatMode

ALL = ("pcp", "natpmp", "upnp")


async def one_run(protocols: tuple[str, ...]) -> tuple[float, str]:
    """Seconds to the handshake, and the protocol hostA's daemon mapped with."""
    async with MeshLab(nat_a=NatMode.SYMMETRIC, log_level="info") as mesh:
        await mesh.lab.start_mapping_router(mesh.lab.a, protocols)
        started = await mesh.start_daemons()
        seen = await mesh.wait_handshake(timeout=60, interval=0.01)
        mapped = await mesh.wait_log(mesh.a, "port mapped", timeout=5)
        used = mapped["msg"].split("protocol=", 1)[1].split()[0]
        return seen - started, used


async def series(protocols: tuple[str, ...], runs: int) -> list[float]:
    label = "+".join(protocols)
    times = []
    for i in range(runs):
        elapsed, used = await one_run(protocols)
        times.append(elapsed)
        print(f"router {label} run {i + 1}: {elapsed:.3f} s (mapped with {used})", flush=True)
    return times


async def main(runs: int, per_protocol_runs: int) -> None:
    times = await series(ALL, runs)
    line = f"protocol=auto converge_median_s={statistics.median(times):.3f} runs={runs}"
    if per_protocol_runs:
        for protocol in ALL:
            alone = await series((protocol,), per_protocol_runs)
            line += f" {protocol}_median_s={statistics.median(alone):.3f}"
        line += f" per_protocol_runs={per_protocol_runs}"
    print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--per-protocol-runs", type=int, help="default: --runs; 0: none")
    args = parser.parse_args()
    per = args.runs if args.per_protocol_runs is None else args.per_protocol_runs
    asyncio.run(main(args.runs, per))
