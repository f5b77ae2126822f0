"""1,000 peers, one publish+fetch cycle through each built-in store.

OpenDHT: the lab's private network of three dhtnodes in the wan namespace, reached from hostA
through its NAT, as a daemon would; figure: the cycle's wall time (target ≤ 10 s).
Cloudflare: the local fake of the v4 API; figure: requests per peer per cycle in the steady
state (target ≤ 2; ≤ 1 with dedup when nothing changed; reads come from one shared zone
listing, so the figure is about 1 write per peer). The quota is lifted for this run, in the
store's budget and in the fake; staying inside it is tested in tests/unit/test_cloudflare.py.
Last line: ``peers=1000 cycle_s=… requests_per_peer=…`` (plus the dedup figure).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stunmeshd.config import PluginConfig
from stunmeshd.lab.topology import Lab
from stunmeshd.stores.cloudflare import CloudflareStore
from stunmeshd.stores.dedup import DedupStore, publish
from stunmeshd.stores.opendht import OpenDHTStore
from stunmeshd.stores.ratelimit import RequestBudget
from tests.fakes.cloudflare import CloudflareFake

ZONE = "example.com"


def keys(prefix: str, n: int) -> list[str]:
    return [hashlib.sha1(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


async def cycle(
    store: object, publish_keys: list[str], fetch_keys: list[str], fingerprint: str
) -> list[str | None]:
    """Publish one sealed-size value per peer and fetch one per peer, all concurrently."""

    async def one(i: int) -> str | None:
        value = secrets.token_hex(60)  # a sealed ipv4 record's size; fresh nonce every time
        await publish(store, publish_keys[i], value, fingerprint)  # type: ignore[arg-type]
        return await store.get(fetch_keys[i])  # type: ignore[attr-defined]

    return await asyncio.gather(*(one(i) for i in range(len(publish_keys))))


async def opendht_cycle(urls: list[str], peers: int) -> float:
    store = OpenDHTStore.from_config(
        PluginConfig(name="dht", type="builtin", builtin="opendht", options={"endpoints": urls})
    )
    pub, fetch = keys("own", peers), keys("peer", peers)
    try:
        # the peers' records are already there, as they would be in a running mesh
        await asyncio.gather(*(store.set(k, secrets.token_hex(60)) for k in fetch))
        started = time.monotonic()
        got = await cycle(store, pub, fetch, "v1")
        elapsed = time.monotonic() - started
    finally:
        await store.close()
    missing = sum(1 for v in got if v is None)
    if missing:
        raise SystemExit(f"OpenDHT: {missing} of {peers} records not read back")
    return elapsed


async def cloudflare_cycles(peers: int) -> tuple[float, float]:
    async with CloudflareFake(token="bench-token", zones=[ZONE], quota=None) as fake:
        pub, fetch = keys("pub", peers), keys("fetch", peers)
        for i, key in enumerate(fetch):
            fake.add_record(ZONE, f"{key}.mesh.{ZONE}", f"{i:04x}")
        store = CloudflareStore(
            "cf", zone=ZONE, token="bench-token", subdomain="mesh", api_base=fake.api_base
        )
        store._budget = RequestBudget(limit=10**9, window=300.0)  # see the module docstring
        deduped = DedupStore(store)
        try:
            await cycle(deduped, pub, fetch, "endpoint-v1")  # first: records get created
            fake.reset_counts()
            await cycle(deduped, pub, fetch, "endpoint-v2")  # endpoint changed: steady state
            changed = fake.total / peers
            fake.reset_counts()
            await cycle(deduped, pub, fetch, "endpoint-v2")  # unchanged, dedup on
            unchanged = fake.total / peers
        finally:
            await store.close()
        return changed, unchanged


async def main(peers: int) -> None:
    async with Lab(coturn=False) as lab:
        urls = await lab.start_dht()
        cycle_s = await lab.a.host.call(opendht_cycle, urls, peers)
    print(f"OpenDHT: {peers} publishes + {peers} fetches in {cycle_s:.2f} s")
    changed, unchanged = await cloudflare_cycles(peers)
    print(
        f"Cloudflare: {changed:.2f} requests/peer when the endpoint changed, "
        f"{unchanged:.2f} with dedup and nothing changed"
    )
    print(
        f"peers={peers} cycle_s={cycle_s:.3f} requests_per_peer={changed:.2f} "
        f"dedup_requests_per_peer={unchanged:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1000)
    asyncio.run(main(parser.parse_args().peers))
