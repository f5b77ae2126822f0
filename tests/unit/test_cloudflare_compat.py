"""Cloudflare records a stunmesh-go peer can read (issue 12, part 5).

A TXT character-string holds 255 characters. The API stores longer content split into quoted
strings and returns it that way; stunmesh-go's reader takes ``result[0].content`` as it comes
and hex-decodes it, without joining. So every value we write must stay within 255 characters,
and what others wrote split must still read back whole.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nacl.public import PrivateKey

from stunmeshd import crypto
from stunmeshd.config import PluginConfig
from stunmeshd.engine import seal_within
from stunmeshd.errors import RecordError
from stunmeshd.stores.cloudflare import CloudflareStore
from tests.fakes.cloudflare import CloudflareFake

ZONE = "example.com"
IPV4 = "198.51.100.100:40000"
IPV6 = "[2001:db8:1234:5678:9abc:def0:1234:5678]:51820"  # full-length, as SLAAC gives

ALICE, BOB = PrivateKey.generate(), PrivateKey.generate()


def go_like_read(content: str) -> crypto.EndpointRecord:
    """What stunmesh-go does with ``content``: hex-decode it as is, then open the box."""
    try:
        bytes.fromhex(content)
    except ValueError:
        raise RecordError("stunmesh-go: content is not hex") from None
    plaintext = crypto.open_sealed(content, bytes(BOB), bytes(ALICE.public_key))
    return crypto.EndpointRecord.from_json(plaintext)


@pytest.fixture
async def cf() -> AsyncIterator[tuple[CloudflareFake, CloudflareStore, str]]:
    token = "cf-" + secrets.token_urlsafe(16)
    async with CloudflareFake(token=token, zones=[ZONE]) as fake:
        cfg = PluginConfig(
            name="cf",
            type="builtin",
            builtin="cloudflare",
            options={"zone": ZONE, "token": token, "api_base": fake.api_base},
        )
        store = CloudflareStore.from_config(cfg)
        try:
            yield fake, store, token
        finally:
            await store.close()


async def raw_content(fake: CloudflareFake, token: str, name: str) -> str:
    """``result[0].content`` exactly as the API returns it (stunmesh-go's findRecord)."""
    url = f"{fake.api_base}/zones/{fake.zone_id(ZONE)}/dns_records"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(url, params={"type": "TXT", "name": name}) as resp,
    ):
        return str((await resp.json())["result"][0]["content"])


def test_a_dual_stack_record_with_ts_is_too_long_for_one_txt_string() -> None:
    record = crypto.EndpointRecord(IPV4, IPV6, ts=1_733_347_200_000)
    sealed = crypto.seal(record.to_json(), bytes(ALICE), bytes(BOB.public_key))
    assert len(sealed) == 292  # the figure
    fitted = seal_within(record, 255, bytes(ALICE), bytes(BOB.public_key))
    assert len(fitted) == 254
    opened = crypto.open_record(fitted, bytes(BOB), bytes(ALICE.public_key))
    assert (opened.ipv4, opened.ipv6, opened.ts) == (IPV4, IPV6, None)  # stunmesh-go's form


def test_ts_is_kept_when_the_record_fits() -> None:
    record = crypto.EndpointRecord(IPV4, None, ts=1_733_347_200_000)
    fitted = seal_within(record, 255, bytes(ALICE), bytes(BOB.public_key))
    assert len(fitted) <= 255
    assert crypto.open_record(fitted, bytes(BOB), bytes(ALICE.public_key)).ts == record.ts


def test_a_record_stunmesh_go_could_not_fit_either_is_left_whole() -> None:
    record = crypto.EndpointRecord("198.151.100.100:40000", IPV6, ts=1)  # 21 + 47 chars
    fitted = seal_within(record, 255, bytes(ALICE), bytes(BOB.public_key))
    go_own = crypto.seal(record.to_json(with_ts=False), bytes(ALICE), bytes(BOB.public_key))
    assert len(fitted) == len(go_own) > 255  # no longer than stunmesh-go's own record


async def test_a_stunmesh_go_reader_reads_our_dual_stack_record(
    cf: tuple[CloudflareFake, CloudflareStore, str],
) -> None:
    fake, store, token = cf
    assert store.max_value_length == 255
    key = crypto.publish_key(bytes(ALICE.public_key), bytes(BOB.public_key))
    record = crypto.EndpointRecord.stamped(IPV4, IPV6)
    await store.set(
        key, seal_within(record, store.max_value_length, bytes(ALICE), bytes(BOB.public_key))
    )
    content = await raw_content(fake, token, store.record_name(key))
    got = go_like_read(content)
    assert (got.ipv4, got.ipv6) == (IPV4, IPV6)


async def test_the_fake_splits_long_content_as_the_api_does_and_we_join_it(
    cf: tuple[CloudflareFake, CloudflareStore, str],
) -> None:
    fake, store, token = cf
    key = crypto.publish_key(bytes(ALICE.public_key), bytes(BOB.public_key))
    record = crypto.EndpointRecord(IPV4, IPV6, ts=1_733_347_200_000)
    long_value = crypto.seal(record.to_json(), bytes(ALICE), bytes(BOB.public_key))  # 292
    await store.set(key, long_value)
    content = await raw_content(fake, token, store.record_name(key))
    assert content == f'"{long_value[:255]}" "{long_value[255:]}"'  # two quoted strings
    with pytest.raises(RecordError):
        go_like_read(content)  # what went wrong before: stunmesh-go cannot read that
    reader = CloudflareStore(
        "cf2", zone=ZONE, token=token, api_base=fake.api_base, timeout=5.0
    )  # a fresh store: nothing cached, it reads the split strings back
    try:
        assert await reader.get(key) == long_value
    finally:
        await reader.close()
    # content written already quoted (another client) is stored as its strings, not re-quoted
    other = hashlib.sha1(b"other").hexdigest()
    fake.add_record(ZONE, store.record_name(other), '"abc" "def"')
    assert await raw_content(fake, token, store.record_name(other)) == '"abc" "def"'
    store.list_ttl = -1.0  # read the zone again now, not the listing of a moment ago
    assert await store.get(other) == "abcdef"
