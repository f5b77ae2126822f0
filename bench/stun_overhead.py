"""What STUN from WireGuard's port costs, compared with an ordinary UDP socket.

Builds its own lab (root needed): wireguard-go holds UDP 51820 on hostA behind a
port-changing NAT, coturn answers in the wan namespace. Inside hostA, in one event loop,
rounds alternate between

* raw   — the engine's per-family discovery (``discovery.discover_family``, unclassified):
          open a raw socket, attach the BPF filter, send from port 51820, match the answer,
          close;
* plain — one Binding round trip on an already open, ordinary UDP socket (same codec),

to the same coturn address; medians of ``--rounds`` each. The last line is
``raw_ms=… plain_ms=… ratio=…``.

``--order interleaved`` (default) alternates raw and plain round by round, which cancels
drift but lets work a raw discovery leaves behind (wireguard-go waking for the answer too,
socket and filter teardown) land in the next plain measurement; ``--order blocks`` runs
blocks of 50 of each in turn instead. ``--gap`` idles before every measurement, as real
discoveries (seconds apart) do.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunmeshd.discovery import StunSettings, discover_family
from stunmeshd.lab.topology import Lab, NatMode
from stunmeshd.stun.codec import encode_binding_request, parse_binding_response

WG_PORT = 51820
EXPECTED_MAPPING = ("198.51.100.10", 40000)
BLOCK = 50


async def plain_round_trip(sock: socket.socket, server: tuple[str, int]) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    tid, request = encode_binding_request()
    await loop.sock_sendto(sock, request, server)
    while True:
        data, source = await loop.sock_recvfrom(sock, 2048)
        if source != server:
            continue
        response = parse_binding_response(data)
        if response.transaction_id == tid and response.mapped is not None:
            return response.mapped


async def measure(
    servers: list[str], rounds: int, warmup: int, gap: float, order: str
) -> dict[str, list[float]]:
    """Runs inside hostA's network namespace (Namespace.call)."""
    host, port = servers[0].rsplit(":", 1)
    server = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    samples: dict[str, list[float]] = {"raw": [], "plain": []}
    try:
        for i in range(warmup + rounds):
            if order == "blocks":
                kinds = ("raw",) if (i // BLOCK) % 2 == 0 else ("plain",)
            else:
                kinds = ("raw", "plain")
            for kind in kinds:
                if gap:
                    await asyncio.sleep(gap)  # let the machine go idle, as between discoveries
                t0 = time.perf_counter()
                if kind == "raw":
                    result, _ = await discover_family(StunSettings(servers), port=WG_PORT)
                else:
                    await plain_round_trip(sock, server)
                elapsed = time.perf_counter() - t0
                if kind == "raw" and (result.mapped != EXPECTED_MAPPING or result.server != server):
                    raise RuntimeError(f"unexpected discovery result {result}")
                if i >= warmup:
                    samples[kind].append(elapsed)
    finally:
        sock.close()
    return samples


def describe(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(len(ms) * 0.9)]
    return (
        f"{name}: n={len(ms)} median={statistics.median(ms):.3f}ms "
        f"p90={p90:.3f}ms min={ms[0]:.3f}ms"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="measured rounds (>= 200)")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--no-wireguard",
        action="store_true",
        help="leave port 51820 free (the kernel then answers each reply with ICMP instead)",
    )
    parser.add_argument("--order", choices=("interleaved", "blocks"), default="interleaved")
    parser.add_argument(
        "--gap", type=float, default=0.0, help="idle seconds before each measurement (default 0)"
    )
    args = parser.parse_args()
    if args.rounds < 200:
        parser.error("--rounds must be at least 200")
    if args.order == "blocks":
        args.rounds *= 2  # each round measures one kind only
    if os.geteuid() != 0:
        print("needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    async with Lab(nat_a=NatMode.PORT_CHANGING) as lab:
        if not args.no_wireguard:
            await lab.start_wireguard(lab.a)  # WireGuard holds the port the raw socket borrows
        gc.collect()
        gc.disable()
        try:
            samples = await lab.a.host.call(
                measure, lab.stun_servers, args.rounds, args.warmup, args.gap, args.order
            )
        finally:
            gc.enable()
    raw = statistics.median(samples["raw"]) * 1000
    plain = statistics.median(samples["plain"]) * 1000
    print(describe("raw discover()", samples["raw"]))
    print(describe("plain round trip", samples["plain"]))
    print(f"raw_ms={raw:.3f} plain_ms={plain:.3f} ratio={raw / plain:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
