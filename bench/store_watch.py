"""1,000 watched peers on OpenDHT: connections, memory, and republish-to-re-read time.

The lab's private network of three dhtnodes in the wan namespace, reached from hostA through
its NAT, as a daemon would. One OpenDHTStore follows 1,000 peer keys the way the engine does
(a watch per peer; each wake is followed by a ``get_all``, the engine's re-read). Then a
sample of peers republish, one at a time, and the time from each put to the follower's
re-read returning the new value is taken. Finally a flood of foreign puts under one key
checks the re-read cap (at most about one read per second per peer).

Figures: ``connections`` (TCP connections from the store to the proxies), ``rss_mb`` (the
process's resident memory with every watch open) and ``rss_per_watch_kb``, ``reread_median_s``
/ ``reread_max_s`` (republish -> re-read), ``flood_reads_per_s`` (re-reads per second under
a flood of puts at ~50/s). Last line: key=value pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import resource
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.lab.topology import Lab
from stunmeshd.stores.opendht import OpenDHTStore

SAMPLES = 20  # peers that republish, one after another
FLOOD_S = 5.0


def keys(prefix: str, n: int) -> list[str]:
    return [hashlib.sha1(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tcp_connections(ports: set[int]) -> int:
    """ESTABLISHED TCP connections in this thread's namespace to one of ``ports``."""
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/thread-self/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "01" and remote_port in ports:
                    count += 1
    return count


class Follower:
    """One peer as the engine follows it: watch, and re-read on every wake."""

    def __init__(self, store: OpenDHTStore, key: str) -> None:
        self.store, self.key = store, key
        self.live = asyncio.Event()
        self.reads = 0
        self.values: set[str] = set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                async with contextlib.aclosing(self.store.watch(self.key)) as events:
                    async for _ in events:
                        self.live.set()
                        self.reads += 1
                        self.values = {v for _, v in await self.store.get_all(self.key)}
                        self.changed.set()
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def following(store: OpenDHTStore, peer_keys: list[str]) -> AsyncIterator[list[Follower]]:
    followers = [Follower(store, k) for k in peer_keys]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    try:
        yield followers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def measure(urls: list[str], peers: int) -> dict[str, float]:
    ports = {int(u.rsplit(":", 1)[1]) for u in urls}
    store = OpenDHTStore("dht", endpoints=urls)
    writer = OpenDHTStore("peer", endpoints=urls[::-1])  # the peers publish via another proxy
    peer_keys = keys(f"watch-{secrets.token_hex(4)}-", peers)
    rss_before = rss_kb()
    try:
        async with following(store, peer_keys) as followers:
            started = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(f.live.wait() for f in followers)), 300)
            opened_s = time.monotonic() - started
            await asyncio.sleep(2)  # settled
            connections = tcp_connections(ports)
            rss_after = rss_kb()

            rereads: list[float] = []
            for follower in followers[:SAMPLES]:
                value = secrets.token_hex(60)
                follower.changed.clear()
                put_at = time.monotonic()
                await writer.set(follower.key, value)
                while value not in follower.values:
                    await asyncio.wait_for(follower.changed.wait(), 30)
                    follower.changed.clear()
                rereads.append(time.monotonic() - put_at)
                await asyncio.sleep(1.1)  # past the re-read cap of the previous sample

            flooded = followers[-1]
            reads_before = flooded.reads
            flood_started = time.monotonic()
            while time.monotonic() - flood_started < FLOOD_S:
                await writer.set(flooded.key, secrets.token_hex(60))  # ~50 puts a second
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.5)
            flood_reads = (flooded.reads - reads_before) / (time.monotonic() - flood_started)
    finally:
        await store.close()
        await writer.close()
    return {
        "connections": connections,
        "open_s": opened_s,
        "rss_mb": rss_after / 1024,
        "rss_per_watch_kb": (rss_after - rss_before) / peers,
        "reread_median_s": statistics.median(rereads),
        "reread_max_s": max(rereads),
        "flood_reads_per_s": flood_reads,
    }


async def main(peers: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * peers + 1024))  # a socket per watch, here and in dhtnode
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    async with Lab(coturn=False) as lab:
        urls = await lab.start_dht()
        figures = await lab.a.host.call(measure, urls, peers)
    print(
        f"OpenDHT: {peers} watches open in {figures['open_s']:.1f} s over "
        f"{figures['connections']:.0f} connections, RSS {figures['rss_mb']:.0f} MB "
        f"({figures['rss_per_watch_kb']:.1f} kB a watch); republish -> re-read median "
        f"{figures['reread_median_s']:.3f} s (max {figures['reread_max_s']:.3f} s); "
        f"{figures['flood_reads_per_s']:.2f} re-reads/s under a flood of puts"
    )
    print(
        f"peers={peers} connections={figures['connections']:.0f} "
        f"rss_mb={figures['rss_mb']:.1f} rss_per_watch_kb={figures['rss_per_watch_kb']:.1f} "
        f"reread_median_s={figures['reread_median_s']:.3f} "
        f"reread_max_s={figures['reread_max_s']:.3f} "
        f"flood_reads_per_s={figures['flood_reads_per_s']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1000)
    asyncio.run(main(parser.parse_args().peers))
