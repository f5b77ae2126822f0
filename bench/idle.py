"""What a daemon costs while nothing happens: wake-ups per second and CPU, over 60 s.

Two lab hosts connected by their daemons (default settings, the lab's OpenDHT store); once
the tunnel is up, hostA's daemon is watched for ``--seconds``: wake-ups are its voluntary
context switches (every thread, from /proc), CPU is user+system time over wall time.
Targets: ≤ 1 wake-up per second on average, < 0.5 % of a core.
Last line: ``wakeups_per_s=… cpu_pct=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.mesh import MeshLab

TICKS = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> tuple[int, float]:
    """(voluntary context switches over all threads, CPU seconds)."""
    switches = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches += int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return switches, cpu


async def main(seconds: float) -> None:
    async with MeshLab(log_level="info") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake()
        await asyncio.sleep(5)  # let start-up work (polls at 1 s, first classifications) end
        proc = mesh.a.process
        assert proc is not None
        loop = asyncio.get_running_loop()
        switches0, cpu0 = sample(proc.pid)
        t0 = loop.time()
        await asyncio.sleep(seconds)
        switches1, cpu1 = sample(proc.pid)
        elapsed = loop.time() - t0
        assert proc.returncode is None, "the daemon died"
    wakeups = (switches1 - switches0) / elapsed
    cpu_pct = 100 * (cpu1 - cpu0) / elapsed
    print(f"idle {elapsed:.0f} s: {switches1 - switches0} wake-ups, {cpu1 - cpu0:.2f} s CPU")
    print(f"wakeups_per_s={wakeups:.2f} cpu_pct={cpu_pct:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(main(parser.parse_args().seconds))
