"""OpenDHT envelopes byte for byte as stunmesh-go writes them, the reader's hardening, the
options, and fail-over against a stand-in proxy (the real dhtnode runs in tests/e2e)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.stores.opendht import (
    OpenDHTStore,
    _LineReader,
    decode_values,
    encode_envelope,
    encode_put_body,
    timeout_option,
)

KEY = "3061b8fcbdb6972059518f1adc3590dca6a5f352"
NOW = 1_700_000_000
VALUE = "000102030405060708090a0b0c0d0e0f1011121314151617"
# Written out from docs/wire-format.md's field order, then base64 (standard alphabet, padded).
ENVELOPE = (
    b'{"magic":"stunmesh-v1","ts":1700000000,'
    b'"data":"000102030405060708090a0b0c0d0e0f1011121314151617"}'
)
ENVELOPE_B64 = (
    "eyJtYWdpYyI6InN0dW5tZXNoLXYxIiwidHMiOjE3MDAwMDAwMDAsImRhdGEiOiIwMDAxMDIwMzA0MDUwNjA3"
    "MDgwOTBhMGIwYzBkMGUwZjEwMTExMjEzMTQxNTE2MTcifQ=="
)


def config(**options: Any) -> PluginConfig:
    dedup = options.pop("dedup", False)
    timeout = options.pop("plugin_timeout", None)
    return PluginConfig(
        name="dht", type="builtin", builtin="opendht", dedup=dedup, timeout=timeout,
        options=options,
    )  # fmt: skip


def line(magic: str, ts: Any, data: Any, **extra: Any) -> bytes:
    """One value as dhtnode's proxy reports it: JSON with base64 ``data``, ``id``, ``type``."""
    env = json.dumps({"magic": magic, "ts": ts, "data": data}).encode()
    return json.dumps({"data": base64.b64encode(env).decode(), "id": "1", "type": 0}).encode()


def raw_line(payload: bytes) -> bytes:
    return json.dumps({"data": base64.b64encode(payload).decode(), "id": "2", "type": 0}).encode()


# -- bytes on the wire ----------------------------------------------------------------------


def test_envelope_bytes_are_stunmesh_gos() -> None:
    assert encode_envelope("stunmesh-v1", NOW, VALUE) == ENVELOPE
    assert encode_put_body(ENVELOPE) == b'{"data":"' + ENVELOPE_B64.encode() + b'"}'


def test_magic_is_escaped_like_go() -> None:
    # Go's encoding/json escapes <, > and & (HTML-safe); a custom magic must match byte for byte
    assert (
        encode_envelope("a<b>&c", 1, "ff")
        == b'{"magic":"a\\u003cb\\u003e\\u0026c","ts":1,"data":"ff"}'
    )


async def test_set_posts_exactly_that_body(proxy: Proxy) -> None:
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW + 0.9)
    try:
        await store.set(KEY, VALUE)
    finally:
        await store.close()
    assert proxy.seen == [("POST", f"/key/{KEY}", ENVELOPE_B64)]
    assert proxy.content_types == ["application/json"]


# -- reading --------------------------------------------------------------------------------


def decode(*lines: bytes, magic: str = "stunmesh-v1") -> list[tuple[int, str]]:
    return decode_values(b"\n".join(lines) + b"\n", magic, now=NOW, max_future_skew=300)


def test_newest_first_without_repeats() -> None:
    got = decode(
        line("stunmesh-v1", NOW - 300, "aa"),
        line("stunmesh-v1", NOW, "cc"),
        line("stunmesh-v1", NOW - 100, "bb"),
        line("stunmesh-v1", NOW, "cc"),
    )
    assert got == [(NOW, "cc"), (NOW - 100, "bb"), (NOW - 300, "aa")]


def test_forgeries_and_garbage_are_ignored() -> None:
    honest = line("stunmesh-v1", NOW - 60, "abcd")
    got = decode(
        b"not json at all",
        b"[1, 2, 3]",
        b'{"nodata": 1}',
        b'{"data": "!!! not base64 !!!"}',
        raw_line(b"\xff\xfe binary, not JSON"),
        raw_line(b'"a JSON string, not an object"'),
        line("someone-else", NOW + 10, "eeee"),  # wrong magic
        line("stunmesh-v1", NOW + 3600, "ffff"),  # an hour ahead: would outrank all
        line("stunmesh-v1", str(NOW), "1111"),  # ts as a string
        line("stunmesh-v1", NOW + 0.5, "2222"),  # ts not an integer
        line("stunmesh-v1", True, "3333"),  # ts a boolean
        line("stunmesh-v1", NOW, "not hex"),
        line("stunmesh-v1", NOW, 1234),
        honest,
        b"",
        b"   ",
    )
    assert got == [(NOW - 60, "abcd")]


def test_small_clock_skew_is_tolerated() -> None:
    got = decode(line("stunmesh-v1", NOW - 5, "aa"), line("stunmesh-v1", NOW + 299, "bb"))
    assert got[0] == (NOW + 299, "bb")


async def test_a_peer_whose_clock_runs_an_hour_fast_is_read(proxy: Proxy) -> None:
    """Issue 12 part 4: a peer up to MAX_FUTURE_SKEW (2 h) ahead is read, newest first."""
    assert OpenDHTStore.max_future_skew >= 3600
    proxy.body = b"\n".join(
        [
            line("stunmesh-v1", NOW + 3600 - 240, "aa"),  # the fast peer's previous put
            line("stunmesh-v1", NOW + 7200 + 1, "ff"),  # beyond the bound: ignored
            line("stunmesh-v1", NOW + 3600, "bb"),  # its latest put, an hour ahead
            line("stunmesh-v1", NOW + 7200, "cc"),  # right at the bound: still read
        ]
    )
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        got = await store.get_all(KEY)
    finally:
        await store.close()
    assert got == [(NOW + 7200, "cc"), (NOW + 3600, "bb"), (NOW + 3600 - 240, "aa")]


def test_custom_magic() -> None:
    got = decode(line("stunmesh-v1", NOW, "aa"), line("mesh-2", NOW - 9, "bb"), magic="mesh-2")
    assert got == [(NOW - 9, "bb")]


def test_what_set_writes_get_reads() -> None:
    body = encode_put_body(encode_envelope("stunmesh-v1", NOW, VALUE))
    assert decode(body) == [(NOW, VALUE)]


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"endpoint": "https://a.example"}, ("https://a.example",)),
        ({"endpoints": ["https://a.example", "http://b.example:8080/"]},
         ("https://a.example", "http://b.example:8080")),
        ({"endpoint": "https://first.example", "endpoints": ["https://b.example"]},
         ("https://first.example", "https://b.example")),
        ({"endpoint": "https://a.example", "endpoints": ["https://b.example", "https://a.example/"]},
         ("https://a.example", "https://b.example")),
        ({"endpoint": "", "endpoints": "https://only.example"}, ("https://only.example",)),
    ],
)  # fmt: skip
def test_endpoint_then_endpoints_in_order(options: dict[str, Any], expected: tuple[str]) -> None:
    assert OpenDHTStore.from_config(config(**options)).endpoints == expected


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({}, "plugins.dht.endpoints", "there is no default"),
        ({"endpoint": "dhtproxy.jami.net"}, "plugins.dht.endpoint", "http:// or https://"),
        ({"endpoints": ["https://ok.example", "ftp://x"]}, "plugins.dht.endpoints[1]", "http://"),
        ({"endpoints": 42}, "plugins.dht.endpoints", "list"),
        ({"endpoints": [42]}, "plugins.dht.endpoints[0]", "string"),
        ({"endpoint": "https://a.example", "magic": 7}, "plugins.dht.magic", "string"),
        ({"endpoint": "https://a.example", "timeout": "soon"}, "plugins.dht.timeout", "duration"),
        ({"endpoint": "https://a.example", "timeout": 0}, "plugins.dht.timeout", "more than 0"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        OpenDHTStore.from_config(config(**options))
    assert err.value.key == key
    assert fragment in str(err.value)


def test_defaults() -> None:
    store = OpenDHTStore.from_config(config(endpoint="https://a.example"))
    assert store.magic == "stunmesh-v1"
    assert store.timeout == 15.0  # stunmesh-go's default for its opendht store
    configured = OpenDHTStore.from_config(config(endpoint="https://a.example", plugin_timeout=12))
    assert configured.timeout == 12.0  # the plugin's `timeout` key
    assert store.dedup is False
    assert store.capabilities.republish_interval < 600 / 2  # refreshed twice per expiry


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("20s", 20.0), ("1m30s", 90.0), ("1.5s", 1.5), ("500ms", 0.5), (30, 30.0)],
)
def test_timeout_option(value: Any, seconds: float) -> None:
    assert timeout_option(value, key="k") == seconds
    store = OpenDHTStore.from_config(config(endpoint="https://a.example", timeout=value))
    assert store.timeout == seconds


# -- talking to a proxy ---------------------------------------------------------------------


class Proxy:
    """A stand-in for one dhtnode proxy: records requests, answers as told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self.content_types: list[str] = []
        self.status = 200
        self.body = b""
        self.streamed: list[bytes] | None = None  # lines sent one chunk at a time, like dhtnode
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        data = json.loads(raw)["data"] if raw else None
        self.seen.append((request.method, request.path, data))
        self.content_types.append(request.content_type)
        if self.streamed is None:
            return web.Response(status=self.status, body=self.body, content_type="application/json")
        resp = web.StreamResponse(status=self.status)
        resp.content_type = "application/json"
        await resp.prepare(request)
        for chunk in self.streamed:
            await resp.write(chunk + b"\n")
            await asyncio.sleep(0.01)  # values trickle in as the DHT finds them
        await resp.write_eof()
        return resp


StartProxy = Callable[[], Awaitable[Proxy]]


@pytest.fixture
async def proxies() -> AsyncIterator[StartProxy]:
    """Starts stand-in proxies on 127.0.0.1 (random ports); stops them after the test."""
    runners: list[web.AppRunner] = []

    async def start() -> Proxy:
        p = Proxy()
        app = web.Application()
        app.router.add_route("*", "/key/{key}", p.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        p.url = f"http://{host}:{port}"
        return p

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def proxy(proxies: StartProxy) -> Proxy:
    return await proxies()


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, b'{"err":"Put failed"}'), (400, b'{"err:":"Incorrect JSON"}'), (404, b"")],
)  # 502 is what a lone dhtnode answers a put
async def test_a_failed_put_moves_to_the_next_endpoint(
    proxies: StartProxy, status: int, body: bytes
) -> None:
    lone, good = await proxies(), await proxies()
    lone.status, lone.body = status, body
    store = OpenDHTStore("dht", endpoints=[lone.url, good.url], clock=lambda: NOW)
    try:
        await store.set(KEY, VALUE)
    finally:
        await store.close()
    assert len(lone.seen) == len(good.seen) == 1


async def test_an_empty_answer_is_an_answer(proxies: StartProxy) -> None:
    first, second = await proxies(), await proxies()
    store = OpenDHTStore("dht", endpoints=[first.url, second.url], clock=lambda: NOW)
    try:
        assert await store.get(KEY) is None
        assert await store.get_all(KEY) == []
    finally:
        await store.close()
    assert len(first.seen) == 2 and second.seen == []


async def test_every_failure_is_named(proxies: StartProxy) -> None:
    first = await proxies()
    first.status, first.body = 500, b"first is unhappy"
    store = OpenDHTStore("dht", endpoints=[first.url, "http://127.0.0.1:9"], clock=lambda: NOW)
    try:
        with pytest.raises(StoreError) as err:
            await store.get(KEY)
    finally:
        await store.close()
    message = str(err.value)
    assert first.url in message and "first is unhappy" in message
    assert "http://127.0.0.1:9" in message


async def test_get_returns_the_newest_acceptable(proxy: Proxy) -> None:
    proxy.body = b"\n".join(
        [
            line("stunmesh-v1", NOW - 200, "aa"),
            line("stunmesh-v1", NOW + 3 * 3600, "ff"),  # forged, beyond the skew bound
            line("stunmesh-v1", NOW - 100, "bb"),
        ]
    )
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        assert await store.get(KEY) == "bb"
        assert await store.get_all(KEY) == [(NOW - 100, "bb"), (NOW - 200, "aa")]
    finally:
        await store.close()


async def test_values_streamed_one_by_one_are_all_read(proxy: Proxy) -> None:
    proxy.streamed = [line("stunmesh-v1", NOW - i, f"{i:02x}") for i in range(5)]
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        got = await store.get_all(KEY)
    finally:
        await store.close()
    assert got == [(NOW - i, f"{i:02x}") for i in range(5)]


@pytest.mark.parametrize("key", ["", "abc", KEY[:-1] + "z", "../../node/info"])
async def test_bad_keys_never_reach_the_proxy(proxy: Proxy, key: str) -> None:
    store = OpenDHTStore("dht", endpoints=[proxy.url])
    try:
        with pytest.raises(StoreError, match="40 hex"):
            await store.get(key)
        with pytest.raises(StoreError, match="40 hex"):
            await store.set(key, "aa")
    finally:
        await store.close()
    assert proxy.seen == []


# -- watching -------------------------------------------------------------------------------


class ListenProxy:
    """A stand-in for dhtnode's ``GET /key/<k>/listen``: the stored values first, then what
    the test pushes, one chunk per push; ``GET /key/<k>`` answers the stored values."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.listen_status = 200
        self.get_status = 200
        self.get_hangs = False
        self.info_hangs = False  # ``GET /`` (node info) never answers: a hung proxy
        self.probes = 0
        self.pushes: asyncio.Queue[bytes | None] = asyncio.Queue()  # None ends the stream
        self.opened = 0
        self.gone = asyncio.Event()  # a listener's connection went away
        self.url = ""

    async def listen(self, request: web.Request) -> web.StreamResponse:
        self.opened += 1
        if self.listen_status != 200:
            return web.Response(status=self.listen_status, body=b'{"err":"no"}')
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        try:
            for value in self.stored:
                await resp.write(value + b"\n")
            while (chunk := await self.pushes.get()) is not None:
                await resp.write(chunk)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.gone.set()
            raise
        return resp

    async def info(self, request: web.Request) -> web.Response:
        self.probes += 1
        if self.info_hangs:
            await asyncio.sleep(3600)
        return web.json_response({"node_id": "00" * 20, "ops": 1})

    async def get(self, request: web.Request) -> web.Response:
        if self.get_hangs:
            await asyncio.sleep(3600)
        body = b"".join(v + b"\n" for v in self.stored)
        return web.Response(status=self.get_status, body=body, content_type="application/json")


StartListenProxy = Callable[[], Awaitable[ListenProxy]]


@pytest.fixture
async def listen_proxies() -> AsyncIterator[StartListenProxy]:
    runners: list[web.AppRunner] = []

    async def start() -> ListenProxy:
        p = ListenProxy()
        app = web.Application()
        app.router.add_get("/key/{key}/listen", p.listen)
        app.router.add_get("/key/{key}", p.get)
        app.router.add_get("/", p.info)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        p.url = f"http://{host}:{port}"
        return p

    yield start
    for runner in runners:
        await runner.cleanup()


async def next_wake(events: AsyncIterator[None], within: float = 5.0) -> None:
    await asyncio.wait_for(anext(events), within)


async def no_wake(events: AsyncIterator[None], quiet: float = 0.3) -> bool:
    """True when ``events`` stays quiet for ``quiet`` s (the pending read is then abandoned)."""
    try:
        await asyncio.wait_for(anext(events), quiet)
    except TimeoutError:
        return True
    return False


async def test_watch_wakes_for_new_values_only(listen_proxies: StartListenProxy) -> None:
    proxy = await listen_proxies()
    proxy.stored = [line("stunmesh-v1", NOW - 60, "aa")]
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    events = store.watch(KEY)
    try:
        await next_wake(events)  # live: the one wake-up a (re)started watch always gives
        # the stored value again under another id, an expiry, forgeries: none is news
        again = json.loads(line("stunmesh-v1", NOW - 60, "aa"))
        again["id"] = "99"
        gone = dict(json.loads(line("stunmesh-v1", NOW - 1, "dd")), expired=True)
        for noise in [
            json.dumps(again).encode(),
            json.dumps(gone).encode(),
            line("someone-else", NOW, "ee"),
            line("stunmesh-v1", NOW + 3 * 3600, "ff"),  # beyond the skew bound
            b"\x00garbage",
            b"{}",
        ]:
            proxy.pushes.put_nowait(noise + b"\n")
        assert await no_wake(events)
    finally:
        await events.aclose()
        await store.close()


async def test_watch_wakes_once_per_new_value(listen_proxies: StartListenProxy) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    events = store.watch(KEY)
    try:
        await next_wake(events)
        new = line("stunmesh-v1", NOW, "bb")
        proxy.pushes.put_nowait(new[:10])  # a line split across chunks
        proxy.pushes.put_nowait(new[10:] + b"\n")
        await next_wake(events)
        proxy.pushes.put_nowait(new + b"\n")  # the same envelope again
        assert await no_wake(events)
    finally:
        await events.aclose()
        await store.close()


async def test_an_overlong_line_is_dropped_not_buffered(listen_proxies: StartListenProxy) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    events = store.watch(KEY)
    try:
        await next_wake(events)
        huge = b'{"data":"' + b"A" * (300 << 10)  # longer than MAX_LINE, in pieces
        for i in range(0, len(huge), 50_000):
            proxy.pushes.put_nowait(huge[i : i + 50_000])
        proxy.pushes.put_nowait(b'"}\n' + line("stunmesh-v1", NOW, "cc") + b"\n")
        await next_wake(events)  # the honest value after it still wakes the watch
    finally:
        await events.aclose()
        await store.close()


async def test_watch_fails_over_in_order(listen_proxies: StartListenProxy) -> None:
    first, second = await listen_proxies(), await listen_proxies()
    first.listen_status = 404  # e.g. a proxy without the /key/ routes
    store = OpenDHTStore("dht", endpoints=[first.url, second.url], clock=lambda: NOW)
    events = store.watch(KEY)
    try:
        await next_wake(events)
        second.pushes.put_nowait(line("stunmesh-v1", NOW, "bb") + b"\n")
        await next_wake(events)
    finally:
        await events.aclose()
        await store.close()
    assert first.opened == 1 and second.opened == 1


async def test_the_line_buffer_stays_bounded() -> None:
    flood = [b"x" * 65536] * 64  # 4 MiB without a newline
    ok = line("stunmesh-v1", NOW, "aa")
    chunks = [*flood, b"end of the flood\n" + ok + b"\n"]
    held: list[int] = []

    async def read_chunk() -> bytes:
        held.append(reader.buffered)
        return chunks.pop(0) if chunks else b""

    reader = _LineReader(read_chunk, 1 << 16)
    assert await reader.next_batch() == [ok]  # the flood is dropped, the next line kept
    assert max(held) <= 1 << 16


@pytest.mark.parametrize("trouble", ["status", "hang"])
async def test_a_failed_snapshot_costs_one_wake_not_the_watch(
    listen_proxies: StartListenProxy, trouble: str
) -> None:
    first, second = await listen_proxies(), await listen_proxies()
    first.stored = [line("stunmesh-v1", NOW - 60, "aa")]
    if trouble == "status":
        first.get_status = 502
    else:
        first.get_hangs = True  # a DHT get waiting on dead nodes
    store = OpenDHTStore("dht", endpoints=[first.url, second.url], clock=lambda: NOW, timeout=0.5)
    events = store.watch(KEY)
    try:
        await next_wake(events)  # live
        await next_wake(events)  # the value that was there, unrecognised without a snapshot
        first.pushes.put_nowait(line("stunmesh-v1", NOW, "bb") + b"\n")
        await next_wake(events)  # still watching the first proxy
    finally:
        await events.aclose()
        await store.close()
    assert second.opened == 0


async def test_watch_names_every_failed_endpoint(listen_proxies: StartListenProxy) -> None:
    first = await listen_proxies()
    first.listen_status = 500

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    hung = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    dead = "http://127.0.0.1:9"
    store = OpenDHTStore("dht", endpoints=[first.url, hung, dead], timeout=0.5)
    try:
        with pytest.raises(StoreError) as err:
            await anext(store.watch(KEY))
    finally:
        await store.close()
        server.close()
        await server.wait_closed()
    message = str(err.value)
    assert f"{first.url}: HTTP 500" in message
    assert f"{hung}: timed out" in message
    assert dead in message


async def test_watch_raises_when_the_stream_ends_or_the_store_closes(
    listen_proxies: StartListenProxy,
) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        events = store.watch(KEY)
        await next_wake(events)
        proxy.pushes.put_nowait(None)
        with pytest.raises(StoreError, match="ended"):
            await next_wake(events)

        events = store.watch(KEY)
        await next_wake(events)
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.05)
        await store.close()
        with pytest.raises(StoreError):
            await asyncio.wait_for(pending, 5)
    finally:
        await store.close()


async def test_watches_leave_the_request_slots_free(listen_proxies: StartListenProxy) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    store.max_concurrency = 2
    keys = [f"{i:040x}" for i in range(5)]
    watches = [store.watch(k) for k in keys]
    try:
        for events in watches:
            await next_wake(events)
        proxy.stored = [line("stunmesh-v1", NOW, "aa")]
        assert await asyncio.wait_for(store.get(KEY), 5) == "aa"  # not starved by 5 streams
    finally:
        for events in watches:
            await events.aclose()
        await store.close()


async def test_closing_a_watch_hangs_up(listen_proxies: StartListenProxy) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        events = store.watch(KEY)
        await next_wake(events)
        task = asyncio.create_task(next_wake(events, within=60))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await events.aclose()
        await asyncio.wait_for(proxy.gone.wait(), 5)  # the proxy saw the connection go
    finally:
        await store.close()


def test_watch_is_advertised() -> None:
    assert OpenDHTStore.capabilities.supports_watch is True


# -- answers that are not DHT values (issue 13, item 5) ---------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b"\x00\x01\x02\xff" * 20,
        b'{"not":"a value"}\n[1,2]\n',
    ],
)
async def test_a_proxy_answering_200_with_garbage_is_a_failure_said_once_a_minute(
    proxies: StartProxy, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    broken, good = await proxies(), await proxies()
    broken.body = garbage
    good.body = line("stunmesh-v1", NOW - 5, "abcd")
    caplog.set_level(logging.WARNING, logger="stunmeshd.stores.opendht")
    failing_over = OpenDHTStore("dht", endpoints=[broken.url, good.url], clock=lambda: NOW)
    alone = OpenDHTStore("dht", endpoints=[broken.url], clock=lambda: NOW)
    try:
        assert await failing_over.get_all(KEY) == [(NOW - 5, "abcd")]  # moved on
        for _ in range(5):  # not "no record yet": an error that says what came back
            with pytest.raises(StoreError, match="not DHT values"):
                await alone.get_all(KEY)
    finally:
        await failing_over.close()
        await alone.close()
    said = [r for r in caplog.records if "not DHT values" in r.getMessage()]
    assert len(said) == 1  # six bad answers from that proxy, one warning


async def test_foreign_values_and_an_empty_answer_are_not_garbage(proxy: Proxy) -> None:
    proxy.body = line("someone-else", NOW, "eeee")  # anyone may put under a key
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    try:
        assert await store.get_all(KEY) == []
        proxy.body = b""
        assert await store.get_all(KEY) == []
    finally:
        await store.close()


# -- store-side pressure (issue 13, item 7) ---------------------------------------------------


async def test_a_flood_of_puts_wakes_a_watch_about_once_per_interval(
    listen_proxies: StartListenProxy,
) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    store.min_wake_interval = 0.25  # the cap (1 s by default), shortened to keep the test quick
    events = store.watch(KEY)
    loop = asyncio.get_running_loop()
    try:
        await next_wake(events)  # live
        values = [line("stunmesh-v1", NOW, secrets.token_hex(8)) for _ in range(400)]

        async def flood() -> None:  # 400 acceptable foreign values, as anyone could put
            for value in values:
                proxy.pushes.put_nowait(value + b"\n")
                await asyncio.sleep(0.003)

        wakes: list[float] = []

        async def count() -> None:
            async for _ in events:
                wakes.append(loop.time())

        counting = asyncio.create_task(count())
        started = loop.time()
        await flood()
        await asyncio.sleep(store.min_wake_interval * 3)  # the last wake comes through
        elapsed = loop.time() - started
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
    finally:
        await events.aclose()
        await store.close()
    assert 1 <= len(wakes) <= elapsed / store.min_wake_interval + 2  # not one per value
    gaps = [b - a for a, b in itertools.pairwise(wakes)]
    assert all(gap >= store.min_wake_interval * 0.9 for gap in gaps)


async def test_the_first_value_after_the_stream_opened_is_not_held_back(
    listen_proxies: StartListenProxy,
) -> None:
    """The peer publishing just after our watch opened (both started together) wakes us at
    once; only the values after that one keep to the interval."""
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW)
    store.min_wake_interval = 3600.0  # a held-back wake would never come within the test
    events = store.watch(KEY)
    try:
        await next_wake(events)  # live
        proxy.pushes.put_nowait(line("stunmesh-v1", NOW, "bb") + b"\n")
        await next_wake(events)  # the first value: at once
        proxy.pushes.put_nowait(line("stunmesh-v1", NOW, "cc") + b"\n")
        assert await no_wake(events)  # the next one: held back by the interval
    finally:
        await events.aclose()
        await store.close()


async def test_a_hung_proxy_ends_the_watch_and_one_probe_serves_every_watch(
    listen_proxies: StartListenProxy,
) -> None:
    proxy = await listen_proxies()
    store = OpenDHTStore("dht", endpoints=[proxy.url], clock=lambda: NOW, timeout=0.5)
    store.watch_idle_check = 0.2  # 30 s by default
    live = asyncio.Event()
    ended: list[BaseException] = []

    async def follow(i: int) -> None:
        try:
            async for _ in store.watch(hashlib.sha1(bytes([i])).hexdigest()):
                live.set()
        except StoreError as exc:
            ended.append(exc)

    followers = [asyncio.create_task(follow(i)) for i in range(5)]
    try:
        await asyncio.wait_for(live.wait(), 5)
        # idle but healthy: the watches stay, sharing probes (not one probe per watch)
        await asyncio.sleep(1.0)
        assert not ended
        assert 1 <= proxy.probes <= 1.0 / store.watch_idle_check + 2  # unshared: 5 times that
        # the proxy hangs with every stream open (a stopped process): each watch ends, within
        # the documented bound of watch_idle_check + timeout
        proxy.info_hangs = True
        bound = store.watch_idle_check + store.timeout
        await asyncio.wait_for(asyncio.gather(*followers), bound * 2 + 1)
        assert len(ended) == 5 and all("stopped answering" in str(e) for e in ended)
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await store.close()
