"""Records in an OpenDHT network through a DHT proxy's REST API (``dhtnode --proxyserver``).

Wire format as stunmesh-go writes it (internal/plugin/builtin/opendht/opendht.go):
set = ``POST <ep>/key/<40hex>`` with ``{"data":"<base64(envelope)>"}``, the envelope being the
compact JSON ``{"magic":"stunmesh-v1","ts":<unix s>,"data":"<hex>"}`` in that field order;
get = ``GET <ep>/key/<40hex>`` answering one JSON object per line. Endpoints are tried in order;
only a transport error or HTTP >= 400 moves on (an empty answer is an answer).

A DHT key holds a *set* of values that anyone may add to and nobody can delete; values expire
after 10 minutes. So the reader keeps only envelopes with our magic and a sane ``ts``, newest
first; a ``ts`` more than ``max_future_skew`` (5 min) ahead of our clock is ignored, or a forged
value dated next year would outrank every honest one until it expired. Since the store cannot
open sealed records, ``get_all`` hands the engine every candidate, newest first, to try in
order; ``get`` is the newest acceptable one, as stunmesh-go returns. Records must be refreshed
well inside the expiry: ``republish_interval`` tells the engine how often, and ``dedup`` is
refused (a skipped refresh would let the record expire).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

DEFAULT_MAGIC = "stunmesh-v1"
KEY_RE = re.compile(r"^[0-9a-fA-F]{40}$")
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
OPTIONS = frozenset({"endpoint", "endpoints", "magic", "timeout"})
MAX_BODY = 4 << 20  # anyone can add values under a key; do not read without bound
SUGGESTED_PROXY = "https://dhtproxy.jami.net"


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
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            raw = base64.b64decode(value["data"], validate=True)
            env = json.loads(raw)
        except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
            continue
        if not isinstance(env, dict) or env.get("magic") != magic:
            continue
        ts, data = env.get("ts"), env.get("data")
        if not isinstance(ts, int) or isinstance(ts, bool):
            continue
        if not isinstance(data, str) or not HEX_RE.match(data):
            continue
        if ts > now + max_future_skew:
            log.debug("opendht value ignored: ts %d is in the future", ts)
            continue
        found.add((ts, data))
    return sorted(found, key=lambda item: item[0], reverse=True)


def parse_duration(value: Any, *, key: str) -> float:
    """Seconds from a Go duration string (``"20s"``, ``"1m30s"``) or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError("must be a duration such as 15s, or a number of seconds", key=key)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * DURATION_UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ConfigError(f"{value!r} is not a duration such as 15s or 1m30s", key=key)
    else:
        raise ConfigError("must be a duration such as 15s, or a number of seconds", key=key)
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

    max_concurrency = 32  # requests in flight per store
    dedup_safe = False  # the registry's marker: values expire, never skip a refresh
    republish_interval = 240.0  # seconds; values expire after 600 s
    max_future_skew = 300.0  # seconds a value's ts may lie ahead of our clock

    def __init__(
        self,
        name: str,
        *,
        endpoints: Sequence[str],
        magic: str = DEFAULT_MAGIC,
        timeout: float = 15.0,
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
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def from_config(cls, cfg: PluginConfig) -> Self:
        """Validate the plugin's options (no I/O). Raises ConfigError naming the key."""
        prefix = f"plugins.{cfg.name}"
        if cfg.dedup:
            raise ConfigError(
                "dedup cannot be used with opendht: its values expire after 10 minutes and "
                "must be republished even when the endpoint is unchanged",
                key=f"{prefix}.dedup",
            )
        endpoints = resolve_endpoints(cfg)
        magic = cfg.options.get("magic")
        if magic is None or magic == "":
            magic = DEFAULT_MAGIC
        if not isinstance(magic, str) or not magic.isprintable():
            raise ConfigError("must be a printable string", key=f"{prefix}.magic")
        if "timeout" in cfg.options:
            timeout = parse_duration(cfg.options["timeout"], key=f"{prefix}.timeout")
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
        body = await self._request("GET", _check_key(key))
        return decode_values(
            body, self.magic, now=self.clock(), max_future_skew=self.max_future_skew
        )

    async def set(self, key: str, value: str) -> None:
        """Add ``value`` under ``key`` in an envelope stamped with the current time."""
        key = _check_key(key)
        if not isinstance(value, str) or not HEX_RE.match(value):
            raise StoreError("opendht: the value must be hex")
        envelope = encode_envelope(self.magic, int(self.clock()), value)
        await self._request("POST", key, encode_put_body(envelope))

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        session, self._session = self._session, None
        self._slots = None
        if session is not None:
            await session.close()

    def _session_for_loop(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._session.closed or self._slots is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": "stunmeshd"},
            )
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._session, self._slots

    async def _request(self, method: str, key: str, body: bytes | None = None) -> bytes:
        """The first endpoint's answer that is not a failure; StoreError naming every failure."""
        session, slots = self._session_for_loop()
        failures: list[str] = []
        async with slots:
            for endpoint in self.endpoints:
                url = f"{endpoint}/key/{key}"
                try:
                    async with session.request(
                        method, url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        raw = await _read_bounded(resp, MAX_BODY)
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    reason = _transport_reason(exc)
                    failures.append(f"{endpoint}: {reason}")
                    log.warning("opendht endpoint failed endpoint=%s reason=%s", endpoint, reason)
                    continue
                if status >= 400:
                    detail = raw[:200].decode("utf-8", "replace").strip()
                    failures.append(f"{endpoint}: HTTP {status} {detail}".rstrip())
                    log.warning("opendht endpoint failed endpoint=%s status=%d", endpoint, status)
                    continue
                if len(raw) > MAX_BODY:
                    log.warning("opendht answer truncated endpoint=%s bytes=%d", endpoint, MAX_BODY)
                    raw = raw[: raw.rfind(b"\n", 0, MAX_BODY) + 1]
                return raw
        raise StoreError(f"opendht: {method} {key}: every endpoint failed: " + "; ".join(failures))


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, but no more than ``limit`` + 1 bytes (more means "too big")."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def _transport_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _check_key(key: str) -> str:
    """Keys are InfoHashes (40 hex); anything else must not reach the proxy's path."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise StoreError("opendht: the key must be 40 hex characters")
    return key.lower()
