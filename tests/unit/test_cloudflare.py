"""The Cloudflare store against a local fake of the v4 API, and the shared request budget.

Waits for the request budget run on a virtual clock (the budget's ``clock``/``sleep`` are
swapped), so quota behaviour over minutes is checked in milliseconds and without timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.stores.cloudflare import CloudflareStore, unquote_txt
from stunmeshd.stores.ratelimit import BudgetExhausted, RequestBudget
from tests.fakes.cloudflare import CloudflareFake

ZONE = "example.com"
LIST = "/zones/{zone_id}/dns_records"
ONE = "/zones/{zone_id}/dns_records/{record_id}"


def hexkey(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


class VirtualTime:
    """A clock that sleeping advances; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, target)

    def install(self, budget: RequestBudget) -> list[float]:
        """Run ``budget`` on this clock; returns the list its granted start times go to."""
        budget.clock, budget.sleep = self.clock, self.sleep
        starts: list[float] = []
        acquire = budget.acquire

        async def recording(max_wait: float | None = None, *, keep: int = 0) -> float:
            start = await acquire(max_wait, keep=keep)
            starts.append(start)
            return start

        budget.acquire = recording  # type: ignore[method-assign]
        return starts


def max_in_window(starts: list[float], window: float) -> int:
    """The largest number of starts inside any half-open window of ``window`` seconds."""
    times = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.fixture
def token() -> str:
    # unique per test: budgets are shared per token for the whole process
    return "cf-" + secrets.token_urlsafe(24)


@pytest.fixture
async def fake(token: str) -> AsyncIterator[CloudflareFake]:
    async with CloudflareFake(token=token, zones=[ZONE, "other.org"]) as cf:
        yield cf


def config(**options: Any) -> PluginConfig:
    dedup = options.pop("dedup", False)
    timeout = options.pop("timeout", 5.0)
    return PluginConfig(
        name="cf",
        type="builtin",
        builtin="cloudflare",
        dedup=dedup,
        timeout=timeout,
        options=options,
    )


@pytest.fixture
async def make_store(
    fake: CloudflareFake, token: str
) -> AsyncIterator[Callable[..., CloudflareStore]]:
    """Stores on the fake (retries without real waiting), closed after the test."""
    stores: list[CloudflareStore] = []

    def make(**options: Any) -> CloudflareStore:
        options.setdefault("zone", ZONE)
        options.setdefault("token", token)
        options.setdefault("subdomain", "mesh")
        options.setdefault("api_base", fake.api_base)
        store = CloudflareStore.from_config(config(**options))
        store.retry_base = 0.0
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({"token": "secret-tok"}, "plugins.cf.zone", "needs `zone`"),
        ({"zone": ZONE}, "plugins.cf.token", "needs `token`"),
        ({"zone": ZONE, "token": ""}, "plugins.cf.token", "non-empty"),
        ({"zone": ZONE, "token": "secret tok"}, "plugins.cf.token", "without spaces"),
        ({"zone": ZONE, "token": 12345}, "plugins.cf.token", "must be a string"),
        ({"zone": "bad_zone!", "token": "secret-tok"}, "plugins.cf.zone", "not a DNS name"),
        ({"zone": ZONE, "token": "secret-tok", "subdomain": "a..b"}, "plugins.cf.subdomain", "DNS"),
        (
            {"zone": ZONE, "token": "secret-tok", "api_base": "ftp://x"},
            "plugins.cf.api_base",
            "http",
        ),
        ({"zone": ["x"], "token": "secret-tok"}, "plugins.cf.zone", "must be a string"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        CloudflareStore.from_config(config(**options))
    assert err.value.key == key
    assert fragment in str(err.value)
    assert "secret" not in str(err.value)


def test_bad_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        CloudflareStore.from_config(config(zone=ZONE, token="t", timeout=0))
    assert err.value.key == "plugins.cf.timeout"


def test_record_names_follow_stunmesh_go() -> None:
    key = hexkey("a")
    with_sub = CloudflareStore.from_config(config(zone="Example.COM.", token="t", subdomain="Mesh"))
    without = CloudflareStore.from_config(config(zone=ZONE, token="t"))
    assert with_sub.record_name(key) == f"{key}.mesh.example.com"
    assert without.record_name(key) == f"{key}.example.com"
    assert without.api_base == "https://api.cloudflare.com/client/v4"


# -- create, update, read -------------------------------------------------------------------


async def test_create_then_update(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    key = hexkey("peer")
    await store.set(key, "aa01")
    [rec] = fake.find(f"{key}.mesh.{ZONE}")
    assert (rec.content, rec.comment, rec.ttl) == ("aa01", "Stunmesh", 1)
    assert fake.count("GET", "/zones") == 1
    assert fake.count("GET", LIST) == 1 and fake.count("POST", LIST) == 1

    fake.reset_counts()
    await store.set(key, "bb02")
    assert fake.total == 1 and fake.count("PATCH", ONE) == 1  # the id was learned from POST
    assert [r.content for r in fake.find(f"{key}.mesh.{ZONE}")] == ["bb02"]

    reader = make_store()
    assert await reader.get(key) == "bb02"


async def test_existing_record_is_patched_not_duplicated(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    key = hexkey("old")
    fake.add_record(ZONE, f"{key}.mesh.{ZONE}", "0000")
    await make_store().set(key, "1111")
    assert [r.content for r in fake.find(f"{key}.mesh.{ZONE}")] == ["1111"]
    assert fake.count("POST", LIST) == 0 and fake.count("PATCH", ONE) == 1


async def test_unchanged_value_is_not_written(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    key = hexkey("same")
    await store.set(key, "abcd")
    fake.reset_counts()
    await store.set(key, "abcd")
    assert fake.total == 0


async def test_missing_record_reads_as_none(make_store: Callable[..., CloudflareStore]) -> None:
    assert await make_store().get(hexkey("nobody")) is None


async def test_bad_keys_and_values_never_reach_the_api(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    for key in ("", "abc", hexkey("x").upper(), "../../zones/x" + "0" * 27):
        with pytest.raises(StoreError):
            await store.get(key)
    with pytest.raises(StoreError, match="hex"):
        await store.set(hexkey("x"), "not hex")
    with pytest.raises(StoreError, match="TXT limit"):
        await store.set(hexkey("x"), "ab" * 1100)
    assert fake.total == 0


async def test_long_content_comes_back_split_and_quoted(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore], token: str
) -> None:
    key = hexkey("long")
    value = secrets.token_hex(300)  # 600 chars: three TXT strings
    await make_store().set(key, value)
    url = f"{fake.api_base}/zones/{fake.zone_id(ZONE)}/dns_records"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(url, params={"type": "TXT", "name": f"{key}.mesh.{ZONE}"}) as resp,
    ):
        content = (await resp.json())["result"][0]["content"]
    assert content.count('" "') == 2  # three quoted strings, as the API splits them
    reader = make_store()
    assert await reader.get(key) == value
    fake.reset_counts()
    await reader.set(key, value)  # the unquoted content was cached: nothing to write
    assert fake.total == 0


async def test_quoted_short_content_is_unquoted(token: str) -> None:
    async with CloudflareFake(token=token, zones=[ZONE], quote_all_txt=True) as cf:
        key = hexkey("q")
        cf.add_record(ZONE, f"{key}.{ZONE}", "c0ffee")
        store = CloudflareStore.from_config(config(zone=ZONE, token=token, api_base=cf.api_base))
        try:
            assert await store.get(key) == "c0ffee"
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("abcdef", "abcdef"),
        ('"abcdef"', "abcdef"),
        ('"abc" "def"', "abcdef"),
        ('"abc"   "def" ', "abcdef"),
        ('"a\\"b" "c\\\\d"', 'a"bc\\d'),
        ('"\\065bc"', "Abc"),
        ('"abc', '"abc'),  # unterminated: left alone for the record layer to refuse
        ('"abc" def', '"abc" def'),
    ],
)
def test_unquote_txt(content: str, expected: str) -> None:
    assert unquote_txt(content) == expected


async def test_deleted_record_is_recreated(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    key = hexkey("gone")
    await store.set(key, "aa")
    [rec] = fake.find(f"{key}.mesh.{ZONE}")
    del fake.records[rec.id]  # someone deleted it in the dashboard
    await store.set(key, "bb")
    assert [r.content for r in fake.find(f"{key}.mesh.{ZONE}")] == ["bb"]


# -- errors ---------------------------------------------------------------------------------


async def test_wrong_token_surfaces_the_api_message(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store(token="not-the-right-token")
    with pytest.raises(StoreError) as err:
        await store.get(hexkey("x"))
    assert "Invalid access token" in str(err.value) and "9109" in str(err.value)
    assert "HTTP 403" in str(err.value)
    assert "not-the-right-token" not in str(err.value)
    assert fake.total == 1  # an auth error is not retried


async def test_unknown_zone_is_reported(make_store: Callable[..., CloudflareStore]) -> None:
    with pytest.raises(StoreError, match=r"zone not found: nope\.net"):
        await make_store(zone="nope.net").get(hexkey("x"))


async def test_unreachable_api_is_a_store_error(token: str) -> None:
    store = CloudflareStore.from_config(
        config(zone=ZONE, token=token, api_base="http://127.0.0.1:9/client/v4")
    )
    store.retry_base = 0.0
    try:
        with pytest.raises(StoreError, match="cloudflare: GET /zones"):
            await store.get(hexkey("x"))
    finally:
        await store.close()


async def test_server_errors_are_retried(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    key = hexkey("r")
    fake.add_record(ZONE, f"{key}.mesh.{ZONE}", "beef")
    fake.fail_next(502, times=2, route=LIST)
    assert await store.get(key) == "beef"
    assert fake.count("GET", LIST) == 3


async def test_persistent_server_errors_surface(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    fake.fail_next(500, times=10, route=LIST)
    with pytest.raises(StoreError) as err:
        await store.get(hexkey("r"))
    assert fake.count("GET", LIST) == store.max_attempts == 3  # bounded
    assert "HTTP 500" in str(err.value) and "Internal server error" in str(err.value)


async def test_failed_create_is_not_retried_blindly(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    key = hexkey("post")
    fake.fail_next(503, method="POST", route=LIST)
    with pytest.raises(StoreError, match="HTTP 503"):
        await store.set(key, "aa")
    assert fake.count("POST", LIST) == 1
    await store.set(key, "aa")  # looks up again first: still exactly one record
    assert [r.content for r in fake.find(f"{key}.mesh.{ZONE}")] == ["aa"]


async def test_the_token_never_reaches_logs_or_reprs(
    fake: CloudflareFake,
    make_store: Callable[..., CloudflareStore],
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = make_store()
    errors: list[BaseException] = []
    await store.set(hexkey("t"), "aa")
    await store.get(hexkey("t"))
    fake.fail_next(500, times=5)
    fake.fail_next(429, retry_after="0")
    for op in (store.get(hexkey("u")), make_store(token=token + "x").get(hexkey("u"))):
        try:
            await op
        except StoreError as exc:
            errors.append(exc)
    assert errors and caplog.records
    assert token not in caplog.text
    assert all(token not in f"{e} {e!r} {e.args}" for e in errors)
    assert token not in repr(store) and token not in repr(vars(store))
    assert token not in repr(store.budget)
    assert token not in repr(config(zone=ZONE, token=token))


# -- the request budget ---------------------------------------------------------------------


async def test_budget_spreads_requests_over_the_window() -> None:
    vt = VirtualTime()
    budget = RequestBudget(10, 300.0, clock=vt.clock, sleep=vt.sleep)
    starts = [await budget.acquire() for _ in range(25)]
    assert starts == [0.0] * 10 + [300.0] * 10 + [600.0] * 5
    assert max_in_window(starts, 300.0) == 10


async def test_budget_pause_holds_everybody() -> None:
    vt = VirtualTime()
    budget = RequestBudget(100, 300.0, clock=vt.clock, sleep=vt.sleep)
    await budget.acquire()
    budget.pause(42)
    assert budget.paused_for() == 42
    assert await budget.acquire() == 42.0


async def test_a_cancelled_wait_gives_its_slot_back() -> None:
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    budget = RequestBudget(1, 300.0, clock=lambda: 0.0, sleep=never)
    assert await budget.acquire() == 0.0  # sent at once
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert budget.used() == 2  # the waiter booked the next window's slot
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used() == 1  # ... and gave it back, unsent
    assert budget.reserve() == 300.0  # while the request that was sent still counts


async def test_budget_refuses_beyond_patience() -> None:
    vt = VirtualTime()
    budget = RequestBudget(1, 300.0, clock=vt.clock, sleep=vt.sleep)
    await budget.acquire()
    with pytest.raises(BudgetExhausted) as err:
        budget.reserve(max_wait=10)
    assert err.value.wait == 300
    assert budget.used() == 1  # the refused request booked nothing


async def test_429_pauses_the_budget_and_retries(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    vt = VirtualTime()
    vt.install(store.budget)
    key = hexkey("busy")
    fake.add_record(ZONE, f"{key}.mesh.{ZONE}", "cafe")
    fake.fail_next(429, retry_after="3", route=LIST)  # within the op's 5 s timeout
    assert await store.get(key) == "cafe"
    assert fake.count("GET", LIST) == 2  # the 429, then the retry
    assert vt.sleeps == [3]


@pytest.mark.parametrize(("retry_after", "pause"), [("86400", 300.0), ("soon", 60.0), (None, 60.0)])
async def test_429_pause_is_bounded(
    fake: CloudflareFake,
    make_store: Callable[..., CloudflareStore],
    retry_after: str | None,
    pause: float,
) -> None:
    store = make_store()
    store.max_budget_wait = 3600.0  # a patient store, to see how long it is told to wait
    vt = VirtualTime()
    vt.install(store.budget)
    fake.fail_next(429, retry_after=retry_after, route="/zones")
    assert await store.get(hexkey("x")) is None
    assert vt.sleeps == [pause]


async def test_a_long_pause_fails_fast_for_every_store_with_the_token(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    a, b = make_store(), make_store(subdomain="other")
    VirtualTime().install(a.budget)
    fake.fail_next(429, retry_after="120")  # far beyond the 5 s operation timeout
    with pytest.raises(StoreError, match="paused by the server"):
        await a.get(hexkey("x"))
    with pytest.raises(StoreError, match="paused by the server"):
        await b.get(hexkey("x"))  # the other instance is held back too ...
    assert fake.total == 1  # ... and nothing more was sent


async def test_repeated_429_surfaces(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    VirtualTime().install(store.budget)
    fake.fail_next(429, times=10, retry_after="1")
    with pytest.raises(StoreError, match="rate limited"):
        await store.get(hexkey("x"))
    assert fake.total == store.max_rate_limited + 1


async def test_budget_is_shared_by_stores_with_one_token(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    a, b = make_store(), make_store(subdomain="other")
    assert a.budget is b.budget
    assert make_store(token="another").budget is not a.budget
    vt = VirtualTime()
    a.budget.limit = 10
    a.max_budget_wait = b.max_budget_wait = 3600.0  # wait for slots rather than fail fast
    a.list_ttl = b.list_ttl = -1.0  # every read lists the zone again
    starts = vt.install(a.budget)
    for i in range(15):
        for s in (a, b):
            await s.get(hexkey(f"{i}"))
    assert len(starts) == fake.total == 32  # two zone lookups + 30 listings
    assert max_in_window(starts, 300.0) == 10
    assert max(starts) == 900.0  # 32 requests at 10 per window: four windows


async def test_exhausted_budget_fails_fast_without_a_request(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    VirtualTime().install(store.budget)
    store.budget.limit = 2
    store.max_budget_wait = 30.0
    store.list_ttl = -1.0  # every read lists the zone again
    await store.get(hexkey("a"))  # the zone lookup and one read spend the budget
    with pytest.raises(StoreError, match="budget exhausted"):
        await store.get(hexkey("a"))
    assert fake.total == 2


# -- quota under load -----------------------------------------------------------------------


async def test_a_thousand_peers_stay_inside_the_quota_without_a_failed_request(
    token: str,
) -> None:
    """Issue 13, item 7: the fake answers 429 past 1,200 requests per 5 minutes, by the same
    virtual clock the store's budget runs on; a refresh every 2 minutes asks for more writes
    than the quota carries, so they queue (newest value per record) instead of failing."""
    vt = VirtualTime()
    peers, cycles, interval = 1000, 6, 120.0
    async with CloudflareFake(token=token, zones=[ZONE], clock=vt.clock) as fake:
        publish_keys = [hexkey(f"pub{i}") for i in range(peers)]
        fetch_keys = [hexkey(f"fetch{i}") for i in range(peers)]
        for i, key in enumerate(fetch_keys):
            fake.add_record(ZONE, f"{key}.mesh.{ZONE}", f"{i:04x}")
        store = CloudflareStore(
            "cf", zone=ZONE, token=token, subdomain="mesh", api_base=fake.api_base, clock=vt.clock
        )
        vt.install(store.budget)
        store.write_patience = 0.01  # real seconds a set waits before leaving its write queued
        newest: dict[int, str] = {}
        failed: list[str] = []
        try:
            for _ in range(cycles):
                began = vt.now

                async def one(i: int) -> str | None:
                    newest[i] = secrets.token_hex(40)  # a fresh seal every cycle
                    try:
                        await store.set(publish_keys[i], newest[i])
                        return await store.get(fetch_keys[i])
                    except StoreError as exc:
                        failed.append(str(exc))
                        return None

                got = await asyncio.gather(*(one(i) for i in range(peers)))
                assert got == [f"{i:04x}" for i in range(peers)]
                # let the writer work until it is done or waits for the quota window
                while store.queued and store.budget.available_in(store.write_keep) <= 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                await vt.sleep(max(0.0, began + interval - vt.now))
            await store.flush()  # what is still queued goes out as the quota allows
        finally:
            await store.close()
        assert failed == [] and fake.rate_limited == 0  # not one failed request
        assert fake.max_in_window(300.0) <= 1200
        assert all(  # every record ends with its newest value
            fake.find(f"{publish_keys[i]}.mesh.{ZONE}")[0].content == newest[i]
            for i in range(peers)
        )
        # reads cost one listing per cycle, not one request per peer
        assert fake.count("GET", LIST) <= 2 * cycles
        # the quota really was the limit: more writes than one window holds, spread over
        # several windows, and fewer than asked for (a queued record takes the newest value)
        assert 2 * peers <= fake.count("PATCH", ONE) < (cycles - 1) * peers
        assert fake.total > 3 * 1200


async def test_a_queued_write_that_fails_is_retried_and_told_to_the_next_set(
    fake: CloudflareFake, make_store: Callable[..., CloudflareStore]
) -> None:
    store = make_store()
    store.requeue_after = 0.05
    key = hexkey("queued")
    await store.set(key, "aa01")  # created; the record id is known now
    store.write_patience = 0.0  # the next set returns with its value still queued
    fake.fail_next(503, times=store.max_attempts, method="PATCH")
    await store.set(key, "bb02")
    await store.flush()  # the write failed after its retries ...
    assert fake.find(f"{key}.mesh.{ZONE}")[0].content == "aa01"
    for _ in range(100):  # ... and is queued again by itself (dedup would not re-publish)
        if fake.find(f"{key}.mesh.{ZONE}")[0].content == "bb02":
            break
        await asyncio.sleep(0.02)
    assert fake.find(f"{key}.mesh.{ZONE}")[0].content == "bb02"
    with pytest.raises(StoreError, match="503"):  # the next set says what happened
        await store.set(key, "cc03")
    await store.flush()
    assert fake.find(f"{key}.mesh.{ZONE}")[0].content == "cc03"  # and still writes
