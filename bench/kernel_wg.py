"""Convergence with kernel WireGuard against wireguard-go, in the same VM.

The VM (stunmeshd.lab.vm: Debian's kernel, which has wireguard.ko, under qemu/TCG) runs the
lab N times with kernel devices on both hosts and N times with wireguard-go on both,
interleaved so that a load change on the machine hits both alike. Each run: two stunmeshd
daemons started together, time to the first handshake on both sides (as bench/convergence.py).
The kernel path must not be the slower one: its peers are re-created like wireguard-go's
(reset_peer), so no 5 s hold-back applies. Absolute figures are TCG's (Python alone takes
seconds to start), not a real machine's.
Last line: ``kernel_median_s=… wggo_median_s=… runs=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stunmeshd.lab.mesh import MeshLab  # noqa: E402
from stunmeshd.lab.sysbus import PrivateBus  # noqa: E402
from stunmeshd.lab.vm import Vm, prerequisites  # noqa: E402

RESULT_PREFIX = "kernel_median_s="


async def one_run(kernel: bool) -> float:
    # the VM has a system bus (systemd's): each daemon gets a bus of its own instead, as two
    # hosts would, rather than both claiming the one name there
    async with (
        PrivateBus() as bus_a,
        PrivateBus() as bus_b,
        MeshLab(log_level="info", kernel=("a", "b") if kernel else ()) as mesh,
    ):
        started = asyncio.get_running_loop().time()
        await asyncio.gather(
            mesh.start_daemon(mesh.a, "--bus", bus_a.address),
            mesh.start_daemon(mesh.b, "--bus", bus_b.address),
        )
        seen = await mesh.wait_handshake(timeout=60, interval=0.01)
        return seen - started


async def guest(runs: int) -> None:
    """Inside the VM: the interleaved series and the result line."""
    times: dict[str, list[float]] = {"kernel": [], "wireguard-go": []}
    for i in range(runs):
        for name in times:
            elapsed = await one_run(kernel=name == "kernel")
            times[name].append(elapsed)
            print(f"{name} run {i + 1}: {elapsed:.3f} s", flush=True)
    print(
        f"{RESULT_PREFIX}{statistics.median(times['kernel']):.3f}"
        f" wggo_median_s={statistics.median(times['wireguard-go']):.3f} runs={runs}"
    )


async def host(runs: int) -> int:
    missing = prerequisites()
    if missing:
        print(f"cannot boot the VM: {', '.join(missing)}", file=sys.stderr)
        return 1
    script = f"cd {REPO}\n{sys.executable} bench/kernel_wg.py --guest --runs {runs}\n"
    with Vm() as vm:
        run = await vm.run(script, timeout=120 + runs * 120)
    print(run.output, end="")
    print(f"(VM: systemd ran the bench {run.boot_s:.1f}s after boot; whole run {run.wall_s:.0f}s)")
    lines = [line for line in run.output.splitlines() if line.startswith(RESULT_PREFIX)]
    if run.status != 0 or not lines:
        print(f"the bench failed in the VM (exit {run.status})", file=sys.stderr)
        return 1
    print(lines[-1])
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guest:
        asyncio.run(guest(args.runs))
    else:
        sys.exit(asyncio.run(host(args.runs)))
