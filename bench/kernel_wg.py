"""Convergence with kernel WireGuard against wireguard-go, in the same VM.

The VM (stunmeshd.lab.vm: Debian's kernel, which has wireguard.ko, under qemu/TCG) runs the
lab N times with kernel devices on both hosts and N times with wireguard-go on both,
interleaved so that a load change on the machine hits both alike. Each run: two stunmeshd
daemons started together, time to the first handshake on both sides (as bench/convergence.py,
through the directory store: no dhtnodes to start under TCG).
The moment of the handshake is WireGuard's own: the later of the two sides' latest-handshake
stamps (nanoseconds), read once the polling (every 0.25 s) has seen both, so the poll's grain is
in neither figure. Both backends are read without a process (stunmeshd.lab.mesh: UAPI socket
or netlink from a thread), so the waiter costs the daemons being timed the same CPU on both.
The kernel path must not be the slower one: its peers are re-created like wireguard-go's
(reset_peer), so no 5 s hold-back applies, and its netlink backend imports no library at
start-up. Absolute figures are TCG's (Python alone takes seconds to start), not a real
machine's.
Last line: ``kernel_median_s=… wggo_median_s=… kernel_after_start_median_s=…
wggo_after_start_median_s=… runs=…`` (``after_start``: from the later daemon's first log line,
i.e. without Python's start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stunmeshd.lab.mesh import MeshLab  # noqa: E402
from stunmeshd.lab.sysbus import PrivateBus  # noqa: E402
from stunmeshd.lab.vm import Vm, prerequisites  # noqa: E402

RESULT_PREFIX = "kernel_median_s="


async def one_run(kernel: bool) -> tuple[float, float]:
    """(seconds from spawning both daemons, seconds from the later one's first log line) to
    the first handshake on both sides. The second leaves out Python's start-up, which under
    TCG takes seconds and varies more than what is measured."""
    # the VM has a system bus (systemd's): each daemon gets a bus of its own instead, as two
    # hosts would, rather than both claiming the one name there
    async with (
        PrivateBus() as bus_a,
        PrivateBus() as bus_b,
        MeshLab(log_level="info", store="dir", kernel=("a", "b") if kernel else ()) as mesh,
    ):
        started = time.time()
        await asyncio.gather(
            mesh.start_daemon(mesh.a, "--bus", bus_a.address),
            mesh.start_daemon(mesh.b, "--bus", bus_b.address),
        )
        try:
            # the moment comes from WireGuard's stamps below: the interval only bounds how long
            # the waiter is late, and a slow poll leaves the CPU to the daemons being timed
            await mesh.wait_handshake(timeout=60, interval=0.25)
        except TimeoutError:
            for node in mesh.nodes.values():
                print(f"--- {node.label} ---\n{node.log_text()[-3000:]}", flush=True)
            raise
        handshake = max(await asyncio.gather(*(n.latest_handshake() for n in mesh.nodes.values())))
        running = max(node.log_lines()[0]["ts"] for node in mesh.nodes.values())
        return handshake - started, handshake - running


async def guest(runs: int) -> None:
    """Inside the VM: one warm-up run (the first reads Python's files cold over 9p), then the
    series, alternating which backend goes first; and the result line."""
    await one_run(kernel=True)
    times: dict[str, list[tuple[float, float]]] = {"kernel": [], "wireguard-go": []}
    for i in range(runs):
        for name in sorted(times, reverse=i % 2 == 1):
            elapsed = await one_run(kernel=name == "kernel")
            times[name].append(elapsed)
            print(
                f"{name} run {i + 1}: {elapsed[0]:.3f} s ({elapsed[1]:.3f} s after start-up)",
                flush=True,
            )
    kernel = times["kernel"]
    wggo = times["wireguard-go"]
    print(
        f"{RESULT_PREFIX}{statistics.median(t[0] for t in kernel):.3f}"
        f" wggo_median_s={statistics.median(t[0] for t in wggo):.3f}"
        f" kernel_after_start_median_s={statistics.median(t[1] for t in kernel):.3f}"
        f" wggo_after_start_median_s={statistics.median(t[1] for t in wggo):.3f} runs={runs}",
        flush=True,
    )


async def host(runs: int) -> int:
    missing = prerequisites()
    if missing:
        print(f"cannot boot the VM: {', '.join(missing)}", file=sys.stderr)
        return 1
    script = f"cd {REPO}\n{sys.executable} bench/kernel_wg.py --guest --runs {runs}\n"
    with Vm(keep=[REPO]) as vm:
        run = await vm.run(script, timeout=180 + runs * 240)
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
