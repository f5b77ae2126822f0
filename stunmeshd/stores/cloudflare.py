"""Records as DNS TXT records through the Cloudflare v4 API, as stunmesh-go stores them.

Record ``<key>.<subdomain>.<zone>`` (or ``<key>.<zone>``) holds the raw hex value
(stunmesh-go's internal/plugin/builtin/cloudflare/cloudflare.go). The API quota is 1,200
requests per 5 minutes per token, so this store is frugal:

- the zone id is looked up once; reads are served from one listing of the zone's TXT records
  (5,000 a page), fetched at most every ``list_ttl`` (10 s) and shared by every peer, so a
  cycle's thousand reads cost one request; record ids come from that listing and from writes,
  so a set costs one PATCH (or one POST for a new record);
- writes go through a queue drained in the background, newest value per record: a write
  waits for a budget slot as long as it takes, leaving ``write_keep`` (100) slots of every
  window to reads, instead of failing. ``set`` returns once its value is written, or after
  ``timeout`` with the value still queued (written when the quota allows; a newer value for
  the same record replaces it). So 1,000 peers' publishes spread over the quota window
  without a failed request; a write error (other than the quota) surfaces on the next set;
- a set whose value equals what the record already holds costs nothing (stunmesh-go skips it
  too); with ``dedup`` the registry wraps this store in ``DedupStore``, so an unchanged
  endpoint spends no write at all;
- every request goes through one budget per token shared by all instances (ratelimit.py);
  ``429 Retry-After`` pauses that budget, 5xx and transport errors are retried a bounded
  number of times (never a POST, which could create a duplicate record). A request waits at
  most ``timeout`` for a budget slot, then fails fast without spending one, because the
  engine abandons an operation after about that long anyway.

A TXT character-string holds 255 characters. The API stores longer content as several quoted
strings and returns it that way, and stunmesh-go's reader hex-decodes ``content`` without
joining them, so ``capabilities.max_value_length`` tells the engine to keep values within 255
(it drops the record's ``ts`` when that is what makes it longer: see ``engine.seal_within``).
Reading, this store joins split strings (``unquote_txt``), so longer values written by
others still read.

The token never appears in logs, reprs or exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.logs import Throttle
from stunmeshd.stores.base import StoreCapabilities, check_key, check_value, transport_reason
from stunmeshd.stores.http import PooledSession, read_bounded
from stunmeshd.stores.ratelimit import BudgetExhausted, RequestBudget, shared_budget

log = logging.getLogger(__name__)

API_BASE = "https://api.cloudflare.com/client/v4"
QUOTA_REQUESTS = 1200  # per token ...
QUOTA_WINDOW = 300.0  # ... per 5 minutes
TXT_CONTENT_MAX = 2048  # Cloudflare's limit on a TXT record's content
TXT_STRING_MAX = 255  # one character-string of a TXT record (RFC 1035)
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
RECORD_NOT_FOUND = 81044  # PATCH of a record someone deleted
OPTIONS = frozenset({"zone", "token", "subdomain", "api_base"})
MAX_BODY = 8 << 20
_noise = Throttle(60.0)
DEFAULT_TIMEOUT = 10.0  # s per request, stunmesh-go's HTTP client timeout


class CloudflareAPIError(StoreError):
    """The API answered with an error; ``status`` and ``codes`` say which."""

    def __init__(self, message: str, *, status: int, codes: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class _Secret:
    """Holds the token so that no repr, vars() dump or traceback local shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"


def unquote_txt(content: str) -> str:
    """TXT content as written: ``"abc" "def"`` -> ``abcdef``; unquoted content is returned as is.

    A TXT string holds 255 bytes, so Cloudflare may return long content as several quoted
    strings (and newer API versions quote even short content).
    """
    text = content.strip()
    if not text.startswith('"'):
        return text
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] != '"':
            return text  # not a list of quoted strings: leave it for the caller to reject
        i += 1
        chunk: list[str] = []
        while i < n and text[i] != '"':
            if text[i] == "\\" and i + 1 < n:
                if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                    chunk.append(chr(int(text[i + 1 : i + 4])))  # RFC 1035 \DDD
                    i += 4
                    continue
                i += 1
            chunk.append(text[i])
            i += 1
        if i >= n:
            return text  # unterminated quote
        i += 1
        parts.append("".join(chunk))
    return "".join(parts)


def _option_str(cfg: PluginConfig, key: str, *, required: bool) -> str:
    value = cfg.options.get(key)
    if value is None:
        if required:
            raise ConfigError(
                f"the cloudflare store needs `{key}`", key=f"plugins.{cfg.name}.{key}"
            )
        return ""
    if not isinstance(value, str):
        raise ConfigError(
            f"must be a string, not {type(value).__name__}", key=f"plugins.{cfg.name}.{key}"
        )
    return value.strip()


def _check_hostname(cfg: PluginConfig, key: str, value: str) -> str:
    name = value.lower().rstrip(".")
    if not name or len(name) > 253 or not all(LABEL_RE.match(p) for p in name.split(".")):
        raise ConfigError(
            f"{value!r} is not a DNS name (letters, digits, hyphens; dot-separated labels)",
            key=f"plugins.{cfg.name}.{key}",
        )
    return name


class CloudflareStore(PooledSession):
    """DNS TXT records in one Cloudflare zone; see the module docstring for the request rules."""

    # A TXT character-string holds 255 bytes; longer content comes back split into quoted
    # strings, which stunmesh-go's reader does not join. The engine keeps values within this.
    capabilities = StoreCapabilities(max_value_length=TXT_STRING_MAX)

    max_attempts = 3  # per request, for 5xx and transport errors
    max_rate_limited = 2  # 429 answers tolerated per request
    retry_base = 0.5  # seconds; doubles per retry, with jitter
    max_retry_after = QUOTA_WINDOW  # never pause longer than a whole quota window for one 429
    default_retry_after = 60.0  # a 429 without a usable Retry-After
    verify_after = 3600.0  # re-read a record we believe current at least this often
    list_ttl = 10.0  # s a zone listing serves reads: one request for every peer's read
    list_page = 5000  # records per listing page (the API's maximum for DNS records)
    max_list_pages = 20  # 100,000 TXT records; beyond that the zone is not a mesh's
    write_keep = 100  # budget slots per window that queued writes leave to reads
    requeue_after = 5.0  # s before a failed queued write is tried again (doubling to 5 min)

    def __init__(
        self,
        name: str,
        *,
        zone: str,
        token: str,
        subdomain: str = "",
        api_base: str = API_BASE,
        timeout: float = DEFAULT_TIMEOUT,
        dedup: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.zone = zone
        self.subdomain = subdomain
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        # Wait at most this long for a budget slot, else fail fast (booking nothing): the
        # engine abandons an operation after about ``timeout`` anyway.
        self.max_budget_wait = timeout
        self.write_patience = timeout  # a set waits this long for its write, then leaves it queued
        self.dedup = dedup  # informational: the registry wraps DedupStore for dedup: true
        self._token = _Secret(token)
        self._budget = shared_budget(
            self.api_base, token, limit=QUOTA_REQUESTS, window=QUOTA_WINDOW
        )
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._zone_lock: asyncio.Lock | None = None
        self._zone_id: str | None = None
        # fqdn -> (record id, content, monotonic time we learned it)
        self._records: dict[str, tuple[str, str, float]] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self.clock = clock  # for the listing's age and the id cache; a test's virtual clock
        self._listing: dict[str, tuple[str, str]] = {}  # fqdn -> (id, content)
        self._listed_at = float("-inf")
        self._listing_task: asyncio.Future[dict[str, tuple[str, str]]] | None = None
        self._pending: dict[str, str] = {}  # fqdn -> newest value waiting to be written
        self._waiters: dict[str, list[asyncio.Future[StoreError | None]]] = {}
        self._write_errors: dict[str, StoreError] = {}  # fqdn -> last failed write
        self._intended: dict[str, str] = {}  # fqdn -> the newest value set for it
        self._retry_delay: dict[str, float] = {}  # fqdn -> backoff of a failed queued write
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writing = False

    @classmethod
    def from_config(cls, cfg: PluginConfig) -> Self:
        """Validate the plugin's options (no I/O). Raises ConfigError naming the key."""
        zone = _check_hostname(cfg, "zone", _option_str(cfg, "zone", required=True))
        token = _option_str(cfg, "token", required=True)
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigError(
                "must be a non-empty API token without spaces or control characters",
                key=f"plugins.{cfg.name}.token",
            )
        subdomain = _option_str(cfg, "subdomain", required=False)
        if subdomain:
            subdomain = _check_hostname(cfg, "subdomain", subdomain)
        api_base = _option_str(cfg, "api_base", required=False) or API_BASE
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                "must be an http:// or https:// URL", key=f"plugins.{cfg.name}.api_base"
            )
        timeout = DEFAULT_TIMEOUT if cfg.timeout is None else cfg.timeout
        if not timeout > 0:
            raise ConfigError("must be more than 0", key=f"plugins.{cfg.name}.timeout")
        for unknown in sorted(set(cfg.options) - OPTIONS):
            log.warning("unknown option ignored plugin=%s key=%s", cfg.name, unknown)
        return cls(
            cfg.name,
            zone=zone,
            token=token,
            subdomain=subdomain,
            api_base=api_base,
            timeout=float(timeout),
            dedup=cfg.dedup,
        )

    def __repr__(self) -> str:
        return (
            f"CloudflareStore(name={self.name!r}, zone={self.zone!r}, "
            f"subdomain={self.subdomain!r}, api_base={self.api_base!r})"
        )

    @property
    def budget(self) -> RequestBudget:
        """The request budget shared by every store using this token at this API base."""
        return self._budget

    def record_name(self, key: str) -> str:
        """The TXT record's name for a record key (stunmesh-go's naming)."""
        if self.subdomain:
            return f"{key}.{self.subdomain}.{self.zone}"
        return f"{key}.{self.zone}"

    # -- the Store protocol ---------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        """The TXT content under ``key`` (quotes stripped, strings joined), or None.

        From the zone listing, at most ``list_ttl`` old (one request serves every peer).
        """
        fqdn = self.record_name(check_key(key))
        found = (await self._zone_listing()).get(fqdn)
        if found is None:
            return None
        return found[1] or None

    async def set(self, key: str, value: str) -> None:
        """Queue ``value`` for ``key``; return once written, or after ``timeout`` still queued.

        Raises StoreError for a bad value, when this write failed, or when the previous write
        of this record failed (it is retried with this value).
        """
        fqdn = self.record_name(check_key(key))
        check_value(value)
        if len(value) > TXT_CONTENT_MAX:
            raise StoreError(
                f"cloudflare: value of {len(value)} chars exceeds the TXT limit of "
                f"{TXT_CONTENT_MAX}"
            )
        earlier = self._write_errors.pop(fqdn, None)
        waiter: asyncio.Future[StoreError | None] = asyncio.get_running_loop().create_future()
        for superseded in self._waiters.pop(fqdn, []):
            if not superseded.done():
                superseded.set_result(None)  # the newer value covers it
        self._intended[fqdn] = value
        self._pending.pop(fqdn, None)
        self._pending[fqdn] = value  # to the back: first come, first written
        self._waiters[fqdn] = [waiter]
        self._start_writer()
        if earlier is not None:
            raise StoreError(f"{earlier} (retrying with the new value)")
        try:
            async with asyncio.timeout(self.write_patience):
                failure = await asyncio.shield(waiter)
        except TimeoutError:
            # nobody waits for it now: a failure is retried by the writer and told to the
            # next set of this record
            with contextlib.suppress(ValueError):
                self._waiters.get(fqdn, []).remove(waiter)
            waiter.cancel()
            log.debug("cloudflare write queued name=%s queued=%d", fqdn, len(self._pending))
            return
        if failure is not None:
            raise failure

    async def flush(self) -> None:
        """Wait until every queued write is done (written or failed)."""
        while self._pending or self._writing:
            assert self._idle is not None
            await self._idle.wait()

    @property
    def queued(self) -> int:
        """Writes waiting for a budget slot."""
        return len(self._pending)

    def _start_writer(self) -> None:
        if self._wakeup is None or self._idle is None:
            self._wakeup, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.clear()
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=f"cloudflare-{self.name}")

    async def _drain(self) -> None:
        """Write queued values one by one at the budget's pace, newest value per record."""
        assert self._wakeup is not None and self._idle is not None
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            fqdn = next(iter(self._pending))
            value = self._pending.pop(fqdn)
            waiters = [w for w in self._waiters.pop(fqdn, []) if not w.done()]
            self._writing = True
            failure: StoreError | None = None
            try:
                await self._write(fqdn, value)
            except CloudflareAPIError as exc:
                if exc.status == 429 and fqdn not in self._pending:
                    self._pending[fqdn] = value  # the quota, not the write: try again later
                    self._waiters.setdefault(fqdn, []).extend(waiters)
                    waiters = []
                else:
                    failure = exc
            except StoreError as exc:
                failure = exc
            except Exception as exc:  # a bug must not stop every later write
                log.exception("cloudflare write crashed name=%s", fqdn)
                failure = StoreError(f"cloudflare: internal error: {exc}")
            finally:
                self._writing = False
            waiters = [w for w in waiters if not w.done()]  # a set may have left meanwhile
            if failure is None:
                self._retry_delay.pop(fqdn, None)
            else:
                _noise.warning(log, f"write:{self.name}", "cloudflare write failed: %s", failure)
                if not waiters:  # the set that queued it has returned: retry, tell the next
                    self._write_errors[fqdn] = failure
                    self._retry_later(fqdn, value)
            for waiter in waiters:
                waiter.set_result(failure)

    def _retry_later(self, fqdn: str, value: str) -> None:
        """Queue a failed write again after a backoff (5 s doubling to 5 min), unless a newer
        value came meanwhile: a set that returned with its value queued relies on it (dedup
        will not publish an unchanged endpoint again)."""
        delay = min(QUOTA_WINDOW, self._retry_delay.get(fqdn, self.requeue_after / 2) * 2)
        self._retry_delay[fqdn] = delay

        def requeue() -> None:
            if self._writer is None or self._intended.get(fqdn) != value:
                return  # closed, or superseded
            if fqdn not in self._pending:
                self._pending[fqdn] = value
                self._start_writer()

        asyncio.get_running_loop().call_later(delay, requeue)

    async def _write(self, fqdn: str, value: str) -> None:
        """PATCH when the record id is known (cache or listing), else look up, else POST."""
        known = self._records.get(fqdn)
        if known is not None and self.clock() - known[2] > self.verify_after:
            known = None  # someone may have deleted or changed it: look again
        if known is None:
            found = (await self._zone_listing(writer=True)).get(fqdn)
        else:
            found = known[:2]
        if found is not None and found[1] == value:
            log.debug("cloudflare set skipped, unchanged name=%s", fqdn)
            return
        if found is not None:
            try:
                await self._patch(fqdn, found[0], value)
                return
            except CloudflareAPIError as exc:
                if RECORD_NOT_FOUND not in exc.codes and exc.status != 404:
                    raise
                self._records.pop(fqdn, None)
                log.info("cloudflare record vanished, looking again name=%s", fqdn)
                found = await self._lookup(fqdn)
                if found is not None:
                    await self._patch(fqdn, found[0], value)
                    return
        await self._create(fqdn, value)

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one); queued writes are dropped."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        listing, self._listing_task = self._listing_task, None
        if listing is not None:
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(StoreError("cloudflare: the store was closed"))
        self._waiters.clear()
        self._pending.clear()
        self._wakeup = self._idle = None
        session, self._session = self._session, None
        self._slots = None
        self._zone_lock = None
        self._key_locks.clear()
        if session is not None:
            await session.close()

    # -- API calls --------------------------------------------------------------------------

    async def _zone(self) -> str:
        if self._zone_id is not None:
            return self._zone_id
        if self._zone_lock is None:
            self._zone_lock = asyncio.Lock()
        async with self._zone_lock:
            if self._zone_id is None:
                data = await self._call("GET", "/zones", params={"name": self.zone})
                result = data.get("result")
                if not isinstance(result, list) or not result:
                    raise StoreError(
                        f"cloudflare: zone not found: {self.zone} "
                        "(check the zone name and that the token may read it)"
                    )
                zone_id = result[0].get("id") if isinstance(result[0], dict) else None
                if not isinstance(zone_id, str) or not zone_id:
                    raise StoreError("cloudflare: the zone lookup answered without an id")
                self._zone_id = zone_id
            return self._zone_id

    async def _zone_listing(self, *, writer: bool = False) -> dict[str, tuple[str, str]]:
        """fqdn -> (id, content) of every TXT record under our names, at most list_ttl old."""
        if self.clock() - self._listed_at < self.list_ttl:
            return self._listing
        task = self._listing_task
        if task is None or task.done():
            task = self._listing_task = asyncio.ensure_future(self._list_all(writer=writer))
        return await asyncio.shield(task)

    async def _list_all(self, *, writer: bool) -> dict[str, tuple[str, str]]:
        zone_id = await self._zone()
        suffix = f".{self.subdomain}.{self.zone}" if self.subdomain else f".{self.zone}"
        found: dict[str, tuple[str, str]] = {}
        for page in range(1, self.max_list_pages + 1):
            data = await self._call(
                "GET",
                f"/zones/{zone_id}/dns_records",
                params={"type": "TXT", "per_page": str(self.list_page), "page": str(page)},
                keep=self.write_keep if writer else 0,
            )
            result = data.get("result")
            for record in result if isinstance(result, list) else []:
                name = record.get("name") if isinstance(record, Mapping) else None
                if isinstance(name, str) and name.lower().endswith(suffix):
                    remembered = self._remember(name.lower(), record)
                    if remembered is not None:
                        found.setdefault(name.lower(), remembered)
            info = data.get("result_info")
            pages = info.get("total_pages") if isinstance(info, Mapping) else None
            if not isinstance(pages, int) or page >= pages or not result:
                break
        else:
            log.warning("cloudflare zone has over %d TXT records; read the first", len(found))
        self._listing, self._listed_at = found, self.clock()
        return found

    async def _lookup(self, fqdn: str) -> tuple[str, str] | None:
        """(record id, content) of the TXT record named ``fqdn``, or None; caches the id."""
        zone_id = await self._zone()
        data = await self._call(
            "GET",
            f"/zones/{zone_id}/dns_records",
            params={"type": "TXT", "name": fqdn},
            keep=self.write_keep,
        )
        result = data.get("result")
        if not isinstance(result, list) or not result:
            self._records.pop(fqdn, None)
            return None
        if len(result) > 1:
            log.warning("cloudflare has %d TXT records, using the first name=%s", len(result), fqdn)
        return self._remember(fqdn, result[0])

    async def _patch(self, fqdn: str, record_id: str, value: str) -> None:
        zone_id = await self._zone()
        data = await self._call(
            "PATCH",
            f"/zones/{zone_id}/dns_records/{record_id}",
            body={"content": value},
            keep=self.write_keep,
        )
        if self._remember(fqdn, data.get("result"), fallback_id=record_id) is None:
            self._records[fqdn] = (record_id, value, self.clock())

    async def _create(self, fqdn: str, value: str) -> None:
        zone_id = await self._zone()
        body = {"type": "TXT", "name": fqdn, "content": value, "comment": "Stunmesh"}
        data = await self._call(
            "POST", f"/zones/{zone_id}/dns_records", body=body, keep=self.write_keep
        )
        if self._remember(fqdn, data.get("result")) is None:
            self._records.pop(fqdn, None)  # created, but the id is unknown: look up next time

    def _remember(
        self, fqdn: str, record: Any, *, fallback_id: str | None = None
    ) -> tuple[str, str] | None:
        if not isinstance(record, Mapping):
            return None
        record_id = record.get("id") or fallback_id
        content = record.get("content")
        if not isinstance(record_id, str) or not isinstance(content, str):
            return None
        content = unquote_txt(content)
        self._records[fqdn] = (record_id, content, self.clock())
        return record_id, content

    # -- transport --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        keep: int = 0,
    ) -> dict[str, Any]:
        """One API call under the budget, with bounded retries; returns the JSON envelope.

        ``keep``: a queued write's call, which waits as long as the budget needs, leaving
        that many slots of each window to others; other calls wait at most ``timeout``.
        """
        session, slots = self._session_for_loop()
        retryable = method != "POST"  # a repeated POST may create a second record
        what = f"{method} {path}"
        failures = rate_limited = 0
        async with slots:
            while True:
                try:
                    if keep:
                        await self._budget.acquire(keep=keep)
                    else:
                        await self._budget.acquire(max_wait=self.max_budget_wait)
                except BudgetExhausted as exc:
                    raise StoreError(f"cloudflare: {what}: {exc}") from None
                try:
                    status, headers, raw = await self._send(session, method, path, params, body)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures += 1
                    reason = transport_reason(exc)
                    log.warning("cloudflare request failed call=%r reason=%s", what, reason)
                    if not retryable or failures >= self.max_attempts:
                        raise StoreError(f"cloudflare: {what}: {reason}") from None
                    await self._backoff(failures)
                    continue
                log.debug("cloudflare call=%r status=%d", what, status)
                if status == 429:
                    rate_limited += 1
                    pause = _retry_after(headers.get("Retry-After"), self.default_retry_after)
                    pause = min(pause, self.max_retry_after)
                    self._budget.pause(pause)
                    log.warning("cloudflare rate limited call=%r pause=%.0fs", what, pause)
                    if rate_limited > self.max_rate_limited:
                        raise CloudflareAPIError(
                            f"cloudflare: {what}: rate limited (HTTP 429), retry in {pause:.0f} s",
                            status=429,
                        )
                    continue
                if status >= 500 and retryable and failures + 1 < self.max_attempts:
                    failures += 1
                    log.warning("cloudflare server error call=%r status=%d", what, status)
                    await self._backoff(failures)
                    continue
                return _envelope(what, status, raw)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        async with session.request(
            method,
            self.api_base + path,
            params=params,
            json=body,
            headers=headers,
            allow_redirects=False,  # never hand the token to another host
        ) as resp:
            raw = await read_bounded(resp, MAX_BODY)
            return resp.status, resp.headers, raw

    async def _backoff(self, failures: int) -> None:
        delay = self.retry_base * 2 ** (failures - 1)
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))


def _retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header (delta seconds; an HTTP date counts as ``default``)."""
    if value is None:
        return default
    with contextlib.suppress(ValueError):
        seconds = float(value.strip())
        if seconds >= 0 and seconds == seconds:  # not NaN
            return seconds
    return default


def _envelope(what: str, status: int, raw: bytes) -> dict[str, Any]:
    """The API's JSON envelope; CloudflareAPIError with the API's own messages on failure."""
    if len(raw) > MAX_BODY:
        raise StoreError(f"cloudflare: {what}: answer larger than {MAX_BODY} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        raise CloudflareAPIError(
            f"cloudflare: {what}: HTTP {status}, answer is not a JSON object", status=status
        )
    errors = data.get("errors") if isinstance(data.get("errors"), list) else []
    if status < 400 and data.get("success") is True:
        return data
    codes: list[int] = []
    messages: list[str] = []
    for err in errors:
        if isinstance(err, Mapping):
            code = err.get("code")
            if isinstance(code, int):
                codes.append(code)
            text = str(err.get("message", "")).strip()[:200]
            messages.append(f"{code}: {text}" if code is not None else text)
    detail = "; ".join(m for m in messages if m) or "no error message"
    raise CloudflareAPIError(
        f"cloudflare: {what}: HTTP {status}: {detail}", status=status, codes=tuple(codes)
    )
