"""Time from two stunmeshd daemons started together to their first WireGuard handshake.

Runs the lab (hostA behind a port-changing NAT, hostB behind an endpoint-independent one) N
times, fresh each time. stunmesh-go needs up to one refresh interval (10 min by default) when
two nodes start together; the target here is a median of at most 2 s.
Last line: ``median_s=… p90_s=… runs=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.mesh import MeshLab  # noqa: E402


async def one_run() -> float:
    async with MeshLab(log_level="info") as mesh:
        started = await mesh.start_daemons()
        seen = await mesh.wait_handshake(timeout=60, interval=0.01)
        return seen - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def main(runs: int) -> None:
    times = []
    for i in range(runs):
        elapsed = await one_run()
        times.append(elapsed)
        print(f"run {i + 1}: {elapsed:.3f} s", flush=True)
    print(f"median_s={statistics.median(times):.3f} p90_s={percentile(times, 0.9):.3f} runs={runs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
