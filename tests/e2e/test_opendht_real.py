"""The OpenDHT store against real ``dhtnode --proxyserver`` processes.

Three nodes run in a network namespace this test creates (loopback only, no link anywhere);
the store runs inside it too, on a thread that entered the namespace (``Namespace.call``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from stunmeshd.errors import StoreError
from stunmeshd.lab.dht import DhtCluster, start_dht_nodes
from stunmeshd.lab.netns import Namespace
from stunmeshd.stores.opendht import OpenDHTStore, encode_envelope
from tests.prereq import require_tools

pytestmark = pytest.mark.root

MAGIC = "stunmesh-v1"


def fresh_key() -> str:
    return hashlib.sha1(secrets.token_bytes(16)).hexdigest()


@pytest.fixture
async def dht() -> AsyncIterator[tuple[Namespace, DhtCluster]]:
    require_tools("dhtnode")
    ns = Namespace(f"smd{secrets.token_hex(3)}-dht")
    await ns.create()
    try:
        cluster = await start_dht_nodes(ns, count=3)
        try:
            yield ns, cluster
        finally:
            await cluster.stop()
    finally:
        await ns.delete()


async def post_raw(url: str, key: str, payload: bytes) -> int:
    """Publish arbitrary bytes under ``key``, as anyone on the DHT could."""
    body = json.dumps({"data": base64.b64encode(payload).decode()})
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/key/{key}", data=body) as resp,
    ):
        return resp.status


async def get_raw(url: str, key: str) -> list[bytes]:
    """Every value under ``key`` exactly as stored (base64-decoded)."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/key/{key}") as resp:
        text = await resp.text()
    return [base64.b64decode(json.loads(ln)["data"]) for ln in text.splitlines() if ln.strip()]


def store(urls: list[str], **kw: Any) -> OpenDHTStore:
    return OpenDHTStore("dht", endpoints=urls, timeout=10.0, **kw)


async def test_round_trip_through_different_proxies(dht: tuple[Namespace, DhtCluster]) -> None:
    ns, cluster = dht
    key, value = fresh_key(), secrets.token_hex(72)

    async def scenario() -> tuple[str | None, str | None]:
        writer, reader = store(cluster.urls[:1]), store(cluster.urls[2:])
        try:
            before = await reader.get(key)
            await writer.set(key, value)
            return before, await reader.get(key)
        finally:
            await writer.close()
            await reader.close()

    assert await ns.call(scenario) == (None, value)


async def test_stored_bytes_are_stunmesh_gos_envelope(dht: tuple[Namespace, DhtCluster]) -> None:
    ns, cluster = dht
    key, value, ts = fresh_key(), "00ff" * 10, int(time.time())

    async def scenario() -> list[bytes]:
        s = store(cluster.urls, clock=lambda: ts)
        try:
            await s.set(key, value)
        finally:
            await s.close()
        return await get_raw(cluster.urls[1], key)

    expected = f'{{"magic":"stunmesh-v1","ts":{ts},"data":"{value}"}}'.encode()
    assert await ns.call(scenario) == [expected]


async def test_newest_ts_wins(dht: tuple[Namespace, DhtCluster]) -> None:
    ns, cluster = dht
    key, now = fresh_key(), int(time.time())

    async def scenario() -> tuple[str | None, list[tuple[int, str]]]:
        older = store(cluster.urls, clock=lambda: now - 60)
        newer = store(cluster.urls, clock=lambda: now)
        try:
            await newer.set(key, "bb02")  # written first, yet newer
            await older.set(key, "aa01")
            return await older.get(key), await older.get_all(key)
        finally:
            await older.close()
            await newer.close()

    newest, everything = await ns.call(scenario)
    assert newest == "bb02"
    assert everything == [(now, "bb02"), (now - 60, "aa01")]


async def test_forged_values_do_not_displace_the_real_one(
    dht: tuple[Namespace, DhtCluster],
) -> None:
    ns, cluster = dht
    key, now = fresh_key(), int(time.time())
    forged = [
        encode_envelope("someone-else", now + 100, "eeee"),  # wrong magic
        encode_envelope(MAGIC, now + 3 * 3600, "ffff"),  # beyond the 2 h skew bound
        b'{"magic":"stunmesh-v1","ts":"99999999999","data":"1111"}',  # ts not a number
        b'{"magic":"stunmesh-v1","ts":' + str(now + 50).encode() + b',"data":"not hex"}',
        b"\x00\xffgarbage, not JSON",
        b"[]",
    ]

    async def scenario() -> tuple[list[int], str | None, list[tuple[int, str]]]:
        s = store(cluster.urls)
        try:
            await s.set(key, "cafe")
            statuses = [await post_raw(cluster.urls[i % 3], key, p) for i, p in enumerate(forged)]
            return statuses, await s.get(key), await s.get_all(key)
        finally:
            await s.close()

    statuses, newest, everything = await ns.call(scenario)
    assert statuses == [200] * len(forged)  # the DHT took every forgery
    assert newest == "cafe"
    assert [data for _, data in everything] == ["cafe"]


async def test_a_peer_an_hour_ahead_is_read_through_a_real_proxy(
    dht: tuple[Namespace, DhtCluster],
) -> None:
    ns, cluster = dht
    key, now = fresh_key(), int(time.time())

    async def scenario() -> list[tuple[int, str]]:
        fast = store(cluster.urls[:1], clock=lambda: now + 3000)  # its clock: 50 min ahead
        honest = store(cluster.urls[2:], clock=lambda: now - 30)
        try:
            await fast.set(key, "fa57")
            await honest.set(key, "0a1d")
            return await honest.get_all(key)
        finally:
            await fast.close()
            await honest.close()

    assert await ns.call(scenario) == [(now + 3000, "fa57"), (now - 30, "0a1d")]


async def test_fails_over_when_the_first_proxy_is_down(
    dht: tuple[Namespace, DhtCluster],
) -> None:
    ns, cluster = dht
    await cluster.stop_node(0)
    key = fresh_key()

    async def scenario() -> tuple[str | None, str]:
        s = store(cluster.urls)  # the dead proxy first
        try:
            await s.set(key, "beef")
            got = await s.get(key)
        finally:
            await s.close()
        dead = store(cluster.urls[:1])
        try:
            await dead.get(key)
        except StoreError as exc:
            return got, str(exc)
        finally:
            await dead.close()
        return got, ""

    got, error = await ns.call(scenario)
    assert got == "beef"
    assert cluster.urls[0] in error  # alone, the dead proxy is reported by name


async def test_many_concurrent_operations(dht: tuple[Namespace, DhtCluster]) -> None:
    ns, cluster = dht
    keys = [fresh_key() for _ in range(300)]

    async def scenario() -> list[str | None]:
        s = store(cluster.urls)
        try:
            await asyncio.gather(*(s.set(k, f"{i:04x}") for i, k in enumerate(keys)))
            return list(await asyncio.gather(*(s.get(k) for k in keys)))
        finally:
            await s.close()

    assert await ns.call(scenario) == [f"{i:04x}" for i in range(len(keys))]
