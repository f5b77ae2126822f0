"""Records in an OpenDHT network through a DHT proxy's REST API (``dhtnode --proxyserver``).

Wire format as stunmesh-go writes it (internal/plugin/builtin/opendht/opendht.go):
set = ``POST <ep>/key/<40hex>`` with ``{"data":"<base64(envelope)>"}``, the envelope being the
compact JSON ``{"magic":"stunmesh-v1","ts":<unix s>,"data":"<hex>"}`` in that field order;
get = ``GET <ep>/key/<40hex>`` answering one JSON object per line. Endpoints are tried in order;
only a transport error or HTTP >= 400 moves on (an empty answer is an answer).

A DHT key holds a *set* of values that anyone may add to and nobody can delete; values expire
after 10 minutes. So the reader keeps only envelopes with our magic and a sane ``ts``, newest
first. A ``ts`` more than ``max_future_skew`` (2 h) ahead of our clock is ignored, or a forged
value dated next year would outrank every honest one until it expired; 2 h keeps a peer
whose clock runs fast (an hour off by a time-zone or DST slip, plus margin) visible. Within
the bound the newest-value choice stays right: one peer's values all carry its own clock, so
their order holds, and the engine takes the newest candidate that *opens* (a forgery dated
ahead does not), ordered by the sealed record's own ``ts`` where it has one. A peer whose
fast clock is corrected has its older, ahead-dated values outrank its new ones until they
expire (10 minutes at most). Since the store cannot
open sealed records, ``get_all`` hands the engine every candidate, newest first, to try in
order; ``get`` is the newest acceptable one, as stunmesh-go returns. Records must be refreshed
well inside the expiry: ``republish_interval`` tells the engine how often, and ``dedup`` is
refused (a skipped refresh would let the record expire).

``watch`` streams a key's changes with ``GET <ep>/key/<40hex>/listen``: the proxy answers
200 with a chunked body, first every value already stored, then one JSON line per value as
it arrives (``"expired":true`` marks a value leaving). That is the route every dhtnode with the
``/key/`` routes serves; the older ``LISTEN /<hash>`` method needs OpenDHT's forked HTTP parser
(Debian's 2.4.12 drops the connection without an answer). The proxy sends nothing while idle,
so silence alone proves nothing: TCP keep-alive notices a vanished proxy, and a proxy that
hangs with the connection open (its kernel still answers keep-alives) is found by a probe:
after ``watch_idle_check`` (30 s) of silence a watch asks whether the endpoint answered
anything lately, else sends one ``GET /`` shared by every watch on it. No answer within
``timeout`` ends the watch with a StoreError, and the engine re-opens it (after 1 s, trying
the endpoints in order). So a hung proxy is detected within 30 s + ``timeout`` (45 s with the
default 15 s) and the watch re-opened on a working endpoint within another 2 x ``timeout``
+ 1 s (the hung endpoint's open times out; the next stream's snapshot read is bounded too).

Anyone may put values under a peer's key, and each new acceptable value is a reason to
re-read; a watch wakes its caller at most once per ``min_wake_interval`` (1 s), folding what
arrives meanwhile into that one wake, so a flood of puts costs at most one read per second
per peer; the first value after the stream opened wakes at once (docs/stores.md).

HTTP is http11.py's client (h11 over asyncio), not aiohttp, whose import alone is ~12 MB of
a daemon's ~30 MB. Per store: one client (one TLS context, made on the first https
endpoint), at most ``max_concurrency`` (32) get/set in flight, each bounded by ``timeout`` as
a whole and answered on an idle keep-alive connection to its endpoint where there is one;
redirects are followed as aiohttp and Go's net/http follow them. Watches take no slot and
their streams and snapshot reads get connections of their own, never pooled; a stream has
no time limit once open (only its connect and head are bounded by ``timeout``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

from stunmeshd.config import PluginConfig, parse_duration
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.logs import Throttle
from stunmeshd.stores.base import StoreCapabilities, check_key, check_value, transport_reason
from stunmeshd.stores.http11 import HTTPClient, HTTPFailure, Stream

log = logging.getLogger(__name__)

DEFAULT_MAGIC = "stunmesh-v1"
DEFAULT_TIMEOUT = 15.0  # s per request, stunmesh-go's default
MAX_FUTURE_SKEW = 7200.0  # s a value's ts may lie ahead of our clock (see the module doc)
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
OPTIONS = frozenset({"endpoint", "endpoints", "magic", "timeout"})
MAX_BODY = 4 << 20  # anyone can add values under a key; do not read without bound
SUGGESTED_PROXY = "https://dhtproxy.jami.net"
MAX_LINE = 256 << 10  # a watched value's line; a DHT value is at most 64 KiB (base64: ~88 KiB)
MAX_SEEN = 4096  # values a watch remembers; forgetting one only costs a spurious wake-up
_noise = Throttle(60.0)  # a broken proxy is said once a minute, not once per peer and cycle
KEEPALIVE = (60, 15, 4)  # TCP keep-alive idle, interval, probes: a dead proxy shows in ~2 min


def _go_json_string(text: str) -> str:
    """A JSON string exactly as Go's encoding/json writes it (HTML-safe escaping)."""
    out = json.dumps(text, ensure_ascii=False)
    return (
        out.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def encode_envelope(magic: str, ts: int, data: str) -> bytes:
    """The envelope bytes stunmesh-go's ``json.Marshal(&envelope{...})`` produces."""
    return (
        f'{{"magic":{_go_json_string(magic)},"ts":{int(ts)},"data":{_go_json_string(data)}}}'
    ).encode()


def encode_put_body(envelope: bytes) -> bytes:
    """The POST body: ``{"data":"<standard base64 of the envelope>"}``."""
    return b'{"data":"' + base64.b64encode(envelope) + b'"}'


def decode_values(
    body: bytes, magic: str, *, now: float, max_future_skew: float
) -> list[tuple[int, str]]:
    """(ts, data) of every acceptable envelope in a proxy's answer, newest first, no repeats.

    Skipped without a fuss: lines that are not JSON objects, ``data`` that is not base64,
    envelopes that are not JSON objects, another magic, a ``ts`` that is not an integer or lies
    more than ``max_future_skew`` seconds ahead of ``now``, ``data`` that is not hex.
    """
    found: set[tuple[int, str]] = set()
    for line in body.splitlines():
        item = _decode_line(line, magic, now=now, max_future_skew=max_future_skew)
        if item is not None:
            found.add(item)
    return sorted(found, key=lambda item: item[0], reverse=True)


def _decode_line(
    line: bytes, magic: str, *, now: float, max_future_skew: float, skip_expired: bool = False
) -> tuple[int, str] | None:
    """(ts, data) of one proxy line if it carries an acceptable envelope (see decode_values)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
        if skip_expired and value.get("expired") is True:
            return None  # a value leaving the DHT is not news
        raw = base64.b64decode(value["data"], validate=True)
        env = json.loads(raw)
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error, RecursionError):
        return None
    if not isinstance(env, dict) or env.get("magic") != magic:
        return None
    ts, data = env.get("ts"), env.get("data")
    if not isinstance(ts, int) or isinstance(ts, bool):
        return None
    if not isinstance(data, str) or not HEX_RE.match(data):
        return None
    if ts > now + max_future_skew:
        log.debug("opendht value ignored: ts %d is in the future", ts)
        return None
    return ts, data


def holds_dht_values(body: bytes) -> bool:
    """True for an empty answer or one with at least one DHT value line (JSON with ``data``).

    Foreign values (anyone may put under a key) are DHT values too; an HTML error page, a
    captive portal or random bytes answered with 200 are not, and must not read as "no
    record yet".
    """
    if not body.strip():
        return True
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict) and isinstance(value.get("data"), str):
            return True
    return False


def timeout_option(value: Any, *, key: str) -> float:
    """Seconds from a Go duration (``"20s"``, ``"1m30s"``; config's parser) or a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError("must be a duration such as 15s, or a number of seconds", key=key)
    if isinstance(value, str):
        try:
            seconds = parse_duration(value.strip())
        except ValueError as exc:
            raise ConfigError(str(exc), key=key) from None
    else:
        seconds = float(value)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError("must be more than 0", key=key)
    return seconds


def _normalize_endpoint(value: Any, *, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not {type(value).__name__}", key=key)
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{value!r} must start with http:// or https://", key=key)
    if parts.query or parts.fragment:
        raise ConfigError(f"{value!r} must not have a query or fragment", key=key)
    return text.rstrip("/")


def resolve_endpoints(cfg: PluginConfig) -> tuple[str, ...]:
    """``endpoint`` first, then ``endpoints``, de-duplicated in order (stunmesh-go's rule)."""
    prefix = f"plugins.{cfg.name}"
    candidates: list[tuple[str, Any]] = []
    single = cfg.options.get("endpoint")
    if single is not None and single != "":
        candidates.append((f"{prefix}.endpoint", single))
    many = cfg.options.get("endpoints")
    if isinstance(many, str):
        many = [many]
    if many is not None:
        if not isinstance(many, Sequence):
            raise ConfigError("must be a list of URLs", key=f"{prefix}.endpoints")
        candidates += [(f"{prefix}.endpoints[{i}]", v) for i, v in enumerate(many) if v != ""]
    endpoints: list[str] = []
    for key, value in candidates:
        url = _normalize_endpoint(value, key=key)
        if url not in endpoints:
            endpoints.append(url)
    if not endpoints:
        raise ConfigError(
            f"the opendht store needs `endpoint` or `endpoints` (a DHT proxy such as "
            f"{SUGGESTED_PROXY}); there is no default",
            key=f"{prefix}.endpoints",
        )
    return tuple(endpoints)


class OpenDHTStore:
    """An OpenDHT proxy (or several, in fail-over order) as a record store."""

    # Values expire after 600 s: republished every 240 s and never skipped by dedup; every
    # candidate under a key is returned (get_all) and ``watch`` pushes changes (see its doc).
    capabilities = StoreCapabilities(
        get_all=True, supports_watch=True, republish_interval=240.0, dedup_safe=False
    )
    max_future_skew = MAX_FUTURE_SKEW  # seconds a value's ts may lie ahead of our clock
    min_wake_interval = 1.0  # s: a watch wakes its caller (a re-read) at most this often
    watch_idle_check = 30.0  # s of silence on a stream before its proxy is probed
    max_concurrency = 32  # requests in flight (watches not counted)

    def __init__(
        self,
        name: str,
        *,
        endpoints: Sequence[str],
        magic: str = DEFAULT_MAGIC,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not endpoints:
            raise ValueError("an OpenDHT store needs at least one endpoint")
        self.name = name
        self.endpoints = tuple(endpoints)
        self.magic = magic
        self.timeout = timeout
        self.dedup = False  # never: values expire, a skipped refresh loses the record
        self.clock = clock  # unix time for envelope ts; replaceable in tests
        self._client: HTTPClient | None = None  # made in the loop that first uses it
        self._slots: asyncio.Semaphore | None = None
        self._alive: dict[str, float] = {}  # endpoint -> loop time it last answered
        self._probes: dict[str, asyncio.Future[bool]] = {}  # shared liveness probes

    @classmethod
    def from_config(cls, cfg: PluginConfig) -> Self:
        """Validate the plugin's options (no I/O). Raises ConfigError naming the key."""
        prefix = f"plugins.{cfg.name}"  # dedup: ignored with a warning (registry, config)
        endpoints = resolve_endpoints(cfg)
        magic = cfg.options.get("magic")
        if magic is None or magic == "":
            magic = DEFAULT_MAGIC
        if not isinstance(magic, str) or not magic.isprintable():
            raise ConfigError("must be a printable string", key=f"{prefix}.magic")
        if "timeout" in cfg.options:
            timeout = timeout_option(cfg.options["timeout"], key=f"{prefix}.timeout")
        elif cfg.timeout is None:
            timeout = DEFAULT_TIMEOUT  # stunmesh-go's: a DHT get may wait out slow nodes
        else:
            timeout = float(cfg.timeout)
            if not timeout > 0:
                raise ConfigError("must be more than 0", key=f"{prefix}.timeout")
        for unknown in sorted(set(cfg.options) - OPTIONS):
            log.warning("unknown option ignored plugin=%s key=%s", cfg.name, unknown)
        return cls(cfg.name, endpoints=endpoints, magic=magic, timeout=timeout)

    def __repr__(self) -> str:
        return f"OpenDHTStore(name={self.name!r}, endpoints={list(self.endpoints)!r})"

    async def get(self, key: str) -> str | None:
        """The newest acceptable value under ``key``, or None. Prefer get_all (see module doc)."""
        values = await self.get_all(key)
        return values[0][1] if values else None

    async def get_all(self, key: str) -> list[tuple[int, str]]:
        """Every acceptable (ts, value) under ``key``, newest first, for the engine to try."""
        body = await self._request("GET", check_key(key))
        return decode_values(
            body, self.magic, now=self.clock(), max_future_skew=self.max_future_skew
        )

    async def set(self, key: str, value: str) -> None:
        """Add ``value`` under ``key`` in an envelope stamped with the current time."""
        key = check_key(key)
        check_value(value)
        envelope = encode_envelope(self.magic, int(self.clock()), value)
        await self._request("POST", key, encode_put_body(envelope))

    async def watch(self, key: str) -> AsyncIterator[None]:
        """Yield once the watch is live, then once per batch of new acceptable values.

        The first yield means "the stream is open": a ``get_all`` done then sees everything
        published before, so a caller that (re)starts a watch loses nothing. After that it
        yields only for values (acceptable as ``decode_values`` judges) that were not under
        the key when the stream opened and were not seen before; forged, expired and repeated
        values never wake it, and values arriving while the caller is busy make one yield.
        (What "was there" comes from a get on the same proxy once the stream is open; if that
        get fails, the values already there wake it once more, which costs only a read.)
        Runs until cancelled. Raises StoreError when no endpoint will open a stream, or when
        the open one breaks or ends or the store is closed (the caller re-establishes, with
        backoff; the first yield of the new watch covers what happened in between).

        Watches take no request slots and each has a connection of its own, never pooled: a
        long-lived stream per peer must not starve ``get``/``set``. The stream has no time
        limit once open (the idle check above watches it). Close it promptly
        (``contextlib.aclosing``) when not iterating to the end; cancellation closes the
        connection.
        """
        key = check_key(key)
        client, _ = self._client_for_loop()
        stream, endpoint, seen = await self._open_watch(client, key)
        lines = _LineReader(stream.read_chunk, MAX_LINE)
        try:
            loop = asyncio.get_running_loop()
            # the open's yield is not counted: the first value after it (typically the peer
            # publishing while both start) wakes at once; later ones keep to the interval
            last_wake = float("-inf")
            yield
            while True:
                try:
                    async with asyncio.timeout(self.watch_idle_check):
                        batch = await lines.next_batch()
                except TimeoutError:
                    # silence is normal, but a proxy that hangs with the stream open is silent
                    # too, and TCP keep-alive cannot tell: ask it (one probe for all watches)
                    if await self._responsive(endpoint):
                        continue
                    _noise.warning(
                        log, f"hung:{endpoint}", "opendht proxy hung endpoint=%s", endpoint
                    )
                    raise StoreError(
                        f"opendht: watch {key} at {endpoint}: the proxy stopped answering"
                    ) from None
                except (HTTPFailure, OSError) as exc:
                    reason = transport_reason(exc)
                    _noise.warning(
                        log,
                        f"broke:{endpoint}",
                        "opendht watch broke endpoint=%s reason=%s",
                        endpoint,
                        reason,
                    )
                    raise StoreError(f"opendht: watch {key} at {endpoint}: {reason}") from None
                if batch is None:
                    raise StoreError(f"opendht: watch {key} at {endpoint}: the proxy ended it")
                self._alive[endpoint] = loop.time()
                now = self.clock()
                fresh = False
                for line in batch:
                    item = _decode_line(
                        line,
                        self.magic,
                        now=now,
                        max_future_skew=self.max_future_skew,
                        skip_expired=True,
                    )
                    if item is None or item in seen:
                        continue
                    seen[item] = None
                    if len(seen) > MAX_SEEN:
                        del seen[next(iter(seen))]
                    fresh = True
                if fresh:
                    # anyone can put values under the key: wake the caller (a re-read) at
                    # most once per min_wake_interval; what arrives meanwhile joins this wake
                    pause = last_wake + self.min_wake_interval - loop.time()
                    if pause > 0:
                        await asyncio.sleep(pause)
                    last_wake = loop.time()
                    yield
        finally:
            client.forget(stream)

    async def _responsive(self, endpoint: str) -> bool:
        """Whether ``endpoint`` answered anything lately, else a cheap ``GET /`` (node info).

        Shared: concurrent callers (a thousand idle watches) await one probe, and any answer
        within ``watch_idle_check`` counts, so an idle healthy proxy costs one request per
        interval, not one per watch.
        """
        loop = asyncio.get_running_loop()
        if loop.time() - self._alive.get(endpoint, float("-inf")) < self.watch_idle_check:
            return True
        probe = self._probes.get(endpoint)
        if probe is None or probe.done():
            probe = self._probes[endpoint] = asyncio.ensure_future(self._probe(endpoint))
        return await asyncio.shield(probe)

    async def _probe(self, endpoint: str) -> bool:
        client, _ = self._client_for_loop()
        try:
            async with asyncio.timeout(self.timeout):
                await client.fetch("GET", f"{endpoint}/", limit=4096)
        except (HTTPFailure, TimeoutError, OSError):
            return False
        self._alive[endpoint] = asyncio.get_running_loop().time()
        return True

    async def _open_watch(
        self, client: HTTPClient, key: str
    ) -> tuple[Stream, str, dict[tuple[int, str], None]]:
        """The first endpoint that opens a listen stream, with what the key held by then."""
        failures: list[str] = []
        for endpoint in self.endpoints:
            stream: Stream | None = None
            try:
                async with asyncio.timeout(self.timeout):  # the connect and the answer's head
                    _check_open(client)
                    stream = await client.stream(f"{endpoint}/key/{key}/listen")
                    if stream.status >= 400:
                        detail = (await stream.read(200))[:200]
                        raise _ErrorStatus(stream.status, detail)
                # opened before the snapshot: a value put in between is in the stream, not lost
                snapshot = await self._snapshot(client, endpoint, key)
            except (HTTPFailure, TimeoutError, OSError, _ErrorStatus) as exc:
                if stream is not None:
                    client.forget(stream)
                reason = str(exc) if isinstance(exc, _ErrorStatus) else transport_reason(exc)
                failures.append(f"{endpoint}: {reason}")
                log.warning("opendht watch endpoint failed endpoint=%s reason=%s", endpoint, reason)
                continue
            except BaseException:
                if stream is not None:
                    client.forget(stream)
                raise
            _enable_keepalive(stream)
            log.debug("opendht watch open endpoint=%s values=%d", endpoint, len(snapshot))
            return stream, endpoint, dict.fromkeys(snapshot)
        raise StoreError(f"opendht: watch {key}: every endpoint failed: " + "; ".join(failures))

    async def _snapshot(self, client: HTTPClient, endpoint: str, key: str) -> list[tuple[int, str]]:
        """The acceptable values under ``key`` now, from the proxy that streams it.

        A get that fails or is slow (a DHT get waits for unresponsive nodes to time out) does
        not fail the watch: the stream is what matters, and without a snapshot the values
        already there only cost one spurious wake-up.
        """
        try:
            async with asyncio.timeout(self.timeout):
                _check_open(client)
                url = f"{endpoint}/key/{key}"  # like the stream: a connection of its own
                status, body = await client.fetch("GET", url, limit=MAX_BODY, pooled=False)
        except (HTTPFailure, TimeoutError, OSError) as exc:
            log.info(
                "opendht watch without snapshot endpoint=%s reason=%s",
                endpoint,
                transport_reason(exc),
            )
            return []
        if status >= 400:
            log.info("opendht watch without snapshot endpoint=%s status=%d", endpoint, status)
            return []
        if len(body) > MAX_BODY:
            body = body[: body.rfind(b"\n", 0, MAX_BODY) + 1]
        return decode_values(
            body, self.magic, now=self.clock(), max_future_skew=self.max_future_skew
        )

    async def close(self) -> None:
        """Close the HTTP client (a later call opens a new one); open watches then fail."""
        client, self._client = self._client, None
        self._slots = None
        for probe in self._probes.values():
            probe.cancel()
        self._probes.clear()
        if client is not None:
            await client.close("the store was closed")  # wakes watches parked on streams

    def _client_for_loop(self) -> tuple[HTTPClient, asyncio.Semaphore]:
        """The store's HTTP client (its TLS context and idle connections) and request slots."""
        if self._client is None or self._client.closed or self._slots is None:
            self._client = HTTPClient(user_agent="stunmeshd", max_idle=self.max_concurrency)
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._client, self._slots

    async def _request(self, method: str, key: str, body: bytes | None = None) -> bytes:
        """The first endpoint's answer that is not a failure; StoreError naming every failure."""
        client, slots = self._client_for_loop()
        failures: list[str] = []
        async with slots:
            for endpoint in self.endpoints:
                url = f"{endpoint}/key/{key}"
                try:
                    async with asyncio.timeout(self.timeout):
                        status, raw = await client.fetch(
                            method,
                            url,
                            body=body,
                            content_type="application/json" if body is not None else None,
                            limit=MAX_BODY,
                        )
                except (HTTPFailure, TimeoutError, OSError) as exc:
                    reason = transport_reason(exc)
                    failures.append(f"{endpoint}: {reason}")
                    _noise.warning(
                        log,
                        f"fail:{endpoint}",
                        "opendht endpoint failed endpoint=%s reason=%s",
                        endpoint,
                        reason,
                    )
                    continue
                if status >= 400:
                    detail = raw[:200].decode("utf-8", "replace").strip()
                    failures.append(f"{endpoint}: HTTP {status} {detail}".rstrip())
                    _noise.warning(
                        log,
                        f"fail:{endpoint}",
                        "opendht endpoint failed endpoint=%s status=%d",
                        endpoint,
                        status,
                    )
                    continue
                if len(raw) > MAX_BODY:
                    log.warning("opendht answer truncated endpoint=%s bytes=%d", endpoint, MAX_BODY)
                    raw = raw[: raw.rfind(b"\n", 0, MAX_BODY) + 1]
                self._alive[endpoint] = asyncio.get_running_loop().time()
                if method == "GET" and not holds_dht_values(raw):
                    # not "no record yet": something that is no DHT proxy answered
                    snippet = raw[:60].decode("utf-8", "replace")
                    snippet = "".join(c if c.isprintable() else "?" for c in snippet)
                    failures.append(f"{endpoint}: HTTP {status} but not DHT values: {snippet!r}")
                    _noise.warning(
                        log,
                        f"garbage:{endpoint}",
                        "opendht endpoint answered with data that is not DHT values "
                        "endpoint=%s status=%d bytes=%d start=%r",
                        endpoint,
                        status,
                        len(raw),
                        snippet,
                    )
                    continue
                return raw
        raise StoreError(f"opendht: {method} {key}: every endpoint failed: " + "; ".join(failures))


class _ErrorStatus(Exception):
    """An endpoint answered with an HTTP error (internal: becomes part of a StoreError)."""

    def __init__(self, status: int, body: bytes) -> None:
        detail = body.decode("utf-8", "replace").strip()
        super().__init__(f"HTTP {status} {detail}".rstrip())


class _LineReader:
    """Complete lines from a streamed body, in batches of what has arrived; bounded memory.

    A line longer than ``limit`` is dropped whole (nothing of ours is that long), so a
    proxy, or anyone who put a huge value, cannot make the reader buffer without end.
    """

    def __init__(self, read: Callable[[], Awaitable[bytes]], limit: int) -> None:
        self._read = read  # the next piece of the body, b"" at its end
        self._limit = limit
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line, until its newline

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line (never more than the limit)."""
        return len(self._partial)

    async def next_batch(self) -> list[bytes] | None:
        """The lines completed by the next data to arrive; None at the end of the stream."""
        while True:
            chunk = await self._read()
            if not chunk:
                return None
            lines = self._feed(chunk)
            if lines:
                return lines

    def _feed(self, chunk: bytes) -> list[bytes]:
        parts = chunk.split(b"\n")
        lines: list[bytes] = []
        for part in parts[:-1]:
            if self._skipping:
                self._skipping = False
            elif len(self._partial) + len(part) <= self._limit:
                self._partial += part
                lines.append(bytes(self._partial))
            else:
                log.warning("opendht watch: dropped a line over %d bytes", self._limit)
            self._partial.clear()
        tail = parts[-1]
        if self._skipping:
            pass
        elif len(self._partial) + len(tail) > self._limit:
            log.warning("opendht watch: dropped a line over %d bytes", self._limit)
            self._partial.clear()
            self._skipping = True
        else:
            self._partial += tail
        return lines


def _check_open(client: HTTPClient) -> None:
    """close() ran while a watch was opening: stop, rather than fail on a closed client."""
    if client.closed:
        raise StoreError("opendht: the store was closed")


def _enable_keepalive(stream: Stream) -> None:
    """TCP keep-alive on a watch: the proxy is silent while idle, so only probes find it gone."""
    sock = stream.socket
    if sock is None:
        return
    idle, interval, count = KEEPALIVE
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    except OSError as exc:
        log.debug("opendht watch: no TCP keep-alive: %s", exc)
