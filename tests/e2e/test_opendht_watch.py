"""OpenDHTStore.watch against real ``dhtnode --proxyserver`` processes in the lab.

Three dhtnodes run in the lab's wan namespace; the store runs inside host A (behind its NAT)
on a thread that entered that namespace (``Host.call``), so every byte stays in namespaces
the test created.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from stunmeshd.errors import StoreError
from stunmeshd.lab.topology import Lab
from stunmeshd.stores.opendht import OpenDHTStore, encode_envelope
from tests.prereq import require_tools

pytestmark = pytest.mark.root

MAGIC = "stunmesh-v1"
QUIET = 1.5  # s a watch must stay asleep; dhtnode relays a put to a listener within ms


def fresh_key() -> str:
    return hashlib.sha1(secrets.token_bytes(16)).hexdigest()


def store(urls: list[str], **kw: Any) -> OpenDHTStore:
    return OpenDHTStore("dht", endpoints=urls, timeout=5.0, **kw)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    require_tools("dhtnode")
    async with Lab(coturn=False) as lab:
        await lab.start_dht()
        yield lab


async def post_raw(url: str, key: str, payload: bytes) -> int:
    """Publish arbitrary bytes under ``key``, as anyone on the DHT could."""
    body = json.dumps({"data": base64.b64encode(payload).decode()})
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/key/{key}", data=body) as resp,
    ):
        return resp.status


def established_to(ports: set[int]) -> int:
    """TCP connections of this thread's network namespace in ESTABLISHED to one of ``ports``."""
    count = 0
    with open("/proc/thread-self/net/tcp") as f:  # the namespace this thread entered
        for row in f.read().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                count += 1
    return count


async def test_wakes_for_a_later_put_not_for_values_already_there(lab: Lab) -> None:
    urls = lab.dht.urls if lab.dht else []
    key = fresh_key()

    async def scenario() -> tuple[bool, bool, list[tuple[int, str]]]:
        writer, reader = store(urls[:1]), store(urls[2:])
        events = reader.watch(key)
        try:
            await writer.set(key, "0001")  # there before the watch
            await asyncio.wait_for(anext(events), 10)  # the watch is live
            wake = asyncio.ensure_future(anext(events))
            await asyncio.sleep(QUIET)
            quiet_before = not wake.done()  # the existing value did not wake it
            await writer.set(key, "0002")  # through another proxy, after
            await asyncio.wait_for(wake, 10)
            return quiet_before, wake.done(), await reader.get_all(key)
        finally:
            await events.aclose()
            await writer.close()
            await reader.close()

    quiet_before, woke, values = await lab.a.host.call(scenario)
    assert quiet_before
    assert woke
    assert [data for _, data in values] == ["0002", "0001"]


async def test_forged_values_do_not_wake_it(lab: Lab) -> None:
    urls = lab.dht.urls if lab.dht else []
    key, now = fresh_key(), int(time.time())
    forged = [
        encode_envelope("someone-else", now, "eeee"),  # wrong magic
        encode_envelope(MAGIC, now + 3 * 3600, "ffff"),  # beyond the 2 h skew bound
        b'{"magic":"stunmesh-v1","ts":"99999999999","data":"1111"}',  # ts not a number
        encode_envelope(MAGIC, now, "not hex"),
        b"\x00\xffgarbage, not JSON",
    ]

    async def scenario() -> tuple[list[int], bool, bool]:
        reader, writer = store(urls), store(urls[1:])
        events = reader.watch(key)
        try:
            await asyncio.wait_for(anext(events), 10)
            wake = asyncio.ensure_future(anext(events))
            statuses = [await post_raw(urls[i % 3], key, p) for i, p in enumerate(forged)]
            await asyncio.sleep(QUIET)
            quiet = not wake.done()
            await writer.set(key, "cafe")  # the honest value still gets through
            await asyncio.wait_for(wake, 10)
            return statuses, quiet, wake.done()
        finally:
            await events.aclose()
            await reader.close()
            await writer.close()

    statuses, quiet, woke = await lab.a.host.call(scenario)
    assert statuses == [200] * len(forged)  # the DHT took every forgery
    assert quiet
    assert woke


async def test_fails_over_when_the_first_proxy_is_down(lab: Lab) -> None:
    assert lab.dht is not None
    urls = lab.dht.urls
    await lab.dht.stop_node(0)
    key = fresh_key()

    async def scenario() -> tuple[bool, str]:
        reader, writer = store(urls), store(urls[1:])  # the dead proxy first
        events = reader.watch(key)
        try:
            await asyncio.wait_for(anext(events), 10)
            await writer.set(key, "beef")
            await asyncio.wait_for(anext(events), 10)
            woke = True
        finally:
            await events.aclose()
            await reader.close()
            await writer.close()
        dead = store(urls[:1])
        try:
            await anext(dead.watch(key))
        except StoreError as exc:
            return woke, str(exc)
        finally:
            await dead.close()
        return woke, ""

    woke, error = await lab.a.host.call(scenario)
    assert woke
    assert urls[0] in error  # alone, the dead proxy is reported by name


async def test_cancelling_a_watch_leaves_no_task_or_connection(lab: Lab) -> None:
    urls = lab.dht.urls if lab.dht else []
    ports = {int(u.rsplit(":", 1)[1]) for u in urls}
    key = fresh_key()

    async def scenario() -> tuple[int, int, set[asyncio.Task[Any]]]:
        reader = store(urls)
        live = asyncio.Event()

        async def consume() -> None:
            async for _ in reader.watch(key):
                live.set()

        consumer = asyncio.create_task(consume())
        try:
            await asyncio.wait_for(live.wait(), 10)
            await asyncio.sleep(0.2)  # parked on the stream
            while_watching = established_to(ports)
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            after = established_to(ports)
            for _ in range(50):  # the socket closes on the loop's next turns
                if after == 0:
                    break
                await asyncio.sleep(0.02)
                after = established_to(ports)
            leftover = asyncio.all_tasks() - {asyncio.current_task()}
            return while_watching, after, leftover  # type: ignore[return-value]
        finally:
            await reader.close()

    while_watching, after, leftover = await lab.a.host.call(scenario)
    assert while_watching == 1  # one stream, and the snapshot's connection already gone
    assert after == 0
    assert leftover == set()


async def test_a_lone_node_still_notifies() -> None:
    """A lone dhtnode answers every put with HTTP 502, yet keeps the value and tells its
    listeners: the watch reports it, while the store's ``set`` calls the put a failure."""
    require_tools("dhtnode")
    key = fresh_key()

    async def scenario(urls: list[str]) -> tuple[bool, str]:
        reader, writer = store(urls), store(urls)
        events = reader.watch(key)
        try:
            await asyncio.wait_for(anext(events), 10)
            error = ""
            try:
                await writer.set(key, "0a0b")
            except StoreError as exc:
                error = str(exc)
            await asyncio.wait_for(anext(events), 10)
            return True, error
        finally:
            await events.aclose()
            await reader.close()
            await writer.close()

    async with Lab(coturn=False) as lab:
        urls = await lab.start_dht(count=1)
        woke, error = await lab.a.host.call(scenario, urls)
    assert woke
    assert "HTTP 502" in error


async def test_a_hung_proxy_is_found_and_the_watch_reopens_elsewhere(lab: Lab) -> None:
    """Issue 13, item 7: a dhtnode stopped with SIGSTOP keeps its connections open (its kernel
    still answers TCP keep-alives); the watch finds it within watch_idle_check + timeout."""
    assert lab.dht is not None
    urls, hung = lab.dht.urls, lab.dht.nodes[0].process
    key = fresh_key()

    async def scenario() -> tuple[str, float, float]:
        s = OpenDHTStore("dht", endpoints=urls[:2], timeout=2.0)
        s.watch_idle_check = 1.0  # 30 s by default; the bound scales with it
        loop = asyncio.get_running_loop()
        events = s.watch(key)
        try:
            await asyncio.wait_for(anext(events), 10)  # live, on the first proxy
            hung.send_signal(signal.SIGSTOP)
            stopped = loop.time()
            try:
                await asyncio.wait_for(anext(events), 30)
                error = "the watch went on"
            except StoreError as exc:
                error = str(exc)
            found = loop.time() - stopped
            await events.aclose()
            events = s.watch(key)  # what the engine does next: fails over to the second
            await asyncio.wait_for(anext(events), 30)
            reopened = loop.time() - stopped
            writer = store(urls[2:])
            try:  # and it works: a put through the third proxy wakes it
                await writer.set(key, "0a0b")
                await asyncio.wait_for(anext(events), 10)
            finally:
                await writer.close()
            return error, found, reopened
        finally:
            hung.send_signal(signal.SIGCONT)
            await events.aclose()
            await s.close()

    error, found, reopened = await lab.a.host.call(scenario)
    assert "stopped answering" in error
    # the documented bound, at this test's settings: watch_idle_check + timeout (+ slack for
    # a loaded machine); re-opening then costs the hung proxy's timeout and the snapshot read
    assert found <= 1.0 + 2.0 + 2.0
    assert reopened > found
