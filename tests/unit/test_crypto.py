"""Record keys, the plaintext and the box: the vectors of docs/wire-format.md, and the guard."""

from __future__ import annotations

import base64
import json
import re

import pytest

from stunmeshd import crypto
from stunmeshd.crypto import EndpointRecord, RecordGuard
from stunmeshd.errors import RecordError

A_PRIV = b"\x01" * 32
B_PRIV = b"\x02" * 32
A_PUB_B64 = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="
B_PUB_B64 = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
A_PUB = base64.b64decode(A_PUB_B64)
B_PUB = base64.b64decode(B_PUB_B64)
VECTOR_PLAIN = b'{"ipv4":"203.0.113.7:51820"}'
VECTOR_NONCE = bytes(range(24))
VECTOR_SEALED = (
    "000102030405060708090a0b0c0d0e0f1011121314151617"
    "ebd1a9e37be97778c96db628161e6f4899edeab3ec05c40c9b6448f4e2ac29c9eae052d19982fa4a3370795f"
)


# -- vectors ---------------------------------------------------------------------------------


def test_key_vector_with_zero_padded_inputs() -> None:
    own = b"\x00" * 32
    peer = b"\x01" + b"\x00" * 31
    assert crypto.publish_key(own, peer) == "37b7dcf21e0e183a9a86170997df242a84a85ff7"
    assert crypto.fetch_key(own, peer) == "9c8d8e5a31c9802b093c4116dfb0a23a311b8029"


def test_public_keys_of_the_vector_private_keys() -> None:
    assert base64.b64encode(crypto.public_key(A_PRIV)).decode() == A_PUB_B64
    assert base64.b64encode(crypto.public_key(B_PRIV)).decode() == B_PUB_B64


def test_publish_keys_of_a_and_b_and_their_symmetry() -> None:
    assert crypto.publish_key(A_PUB, B_PUB) == "12850bc1c76f60f1b38169066b58097a94c7c366"
    assert crypto.publish_key(B_PUB, A_PUB) == "f9022a8f02048b82ac6bb16887c666834ae6c204"
    # What A reads for B is what B writes for A.
    assert crypto.fetch_key(A_PUB, B_PUB) == crypto.publish_key(B_PUB, A_PUB)
    assert crypto.fetch_key(B_PUB, A_PUB) == crypto.publish_key(A_PUB, B_PUB)


def test_sealed_vector_a_to_b() -> None:
    assert crypto.seal(VECTOR_PLAIN, A_PRIV, B_PUB, nonce=VECTOR_NONCE) == VECTOR_SEALED


def test_b_opens_the_vector_with_its_own_key() -> None:
    assert crypto.open_sealed(VECTOR_SEALED, B_PRIV, A_PUB) == VECTOR_PLAIN
    record = crypto.open_record(VECTOR_SEALED, B_PRIV, A_PUB)
    assert record == EndpointRecord(ipv4="203.0.113.7:51820")


def test_the_vector_plaintext_is_what_we_write() -> None:
    assert EndpointRecord(ipv4="203.0.113.7:51820").to_json() == VECTOR_PLAIN


# -- plaintext -------------------------------------------------------------------------------


def test_compact_json_in_go_key_order() -> None:
    record = EndpointRecord(ipv6="[2001:db8::7]:51820", ipv4="203.0.113.7:51820", ts=1700000000)
    assert record.to_json() == (
        b'{"ipv4":"203.0.113.7:51820","ipv6":"[2001:db8::7]:51820","ts":1700000000}'
    )
    assert record.to_json(with_ts=False) == (
        b'{"ipv4":"203.0.113.7:51820","ipv6":"[2001:db8::7]:51820"}'
    )
    assert EndpointRecord(ipv6="[2001:db8::7]:51820").to_json() == b'{"ipv6":"[2001:db8::7]:51820"}'


def test_fingerprint_is_the_stunmesh_go_plaintext_whatever_the_ts() -> None:
    one = EndpointRecord(ipv4="203.0.113.7:51820", ts=1)
    two = EndpointRecord(ipv4="203.0.113.7:51820", ts=2)
    assert one.fingerprint == two.fingerprint == VECTOR_PLAIN.decode()
    assert EndpointRecord(ipv4="203.0.113.7:51821", ts=1).fingerprint != one.fingerprint


def test_stamped_record_carries_the_time() -> None:
    record = EndpointRecord.stamped(ipv4="203.0.113.7:51820")
    assert isinstance(record.ts, int) and record.ts > 1_600_000_000


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("[2001:DB8:0:0:0:0:0:7]:51820", "[2001:db8::7]:51820"),
        ("[2001:db8:0:0:1:0:0:1]:1", "[2001:db8::1:0:0:1]:1"),
        ("[2001:db8:0:1:1:1:1:1]:65535", "[2001:db8:0:1:1:1:1:1]:65535"),
        ("[2001:0db8::0007]:080", "[2001:db8::7]:80"),
    ],
)
def test_ipv6_is_normalised_to_rfc_5952(given: str, canonical: str) -> None:
    record = EndpointRecord(ipv6=given)
    assert record.ipv6 == canonical
    assert json.loads(record.to_json())["ipv6"] == canonical


@pytest.mark.parametrize(
    ("field", "endpoint", "reason"),
    [
        ("ipv4", "203.0.113.7", "expected ip:port"),
        ("ipv4", "203.0.113.7:0", "outside 1..65535"),
        ("ipv4", "203.0.113.7:65536", "outside 1..65535"),
        ("ipv4", "203.0.113.7:+80", "not a number"),
        ("ipv4", "203.0.113.7: 80", "not a number"),
        ("ipv4", "203.0.113.7:٨٠", "not a number"),
        ("ipv4", "stun.example.com:3478", "not an IPv4 address"),
        ("ipv4", "[2001:db8::7]:51820", "not an IPv4 address"),
        ("ipv4", "203.0.113.007:1", "not an IPv4 address"),
        ("ipv4", "0.0.0.0:51820", "cannot be a peer's address"),
        ("ipv4", "224.0.0.1:51820", "cannot be a peer's address"),
        ("ipv4", "255.255.255.255:51820", "cannot be a peer's address"),
        ("ipv4", "127.0.0.1:51820", "loopback"),
        ("ipv4", "127.8.9.10:51820", "loopback"),
        ("ipv4", "0.1.2.3:51820", "unspecified"),
        ("ipv4", "169.254.7.7:51820", "link-local"),
        ("ipv4", "240.0.0.1:51820", "class E"),
        ("ipv4", "239.1.1.1:51820", "multicast"),
        ("ipv6", "[::1]:51820", "loopback"),
        ("ipv6", "[fe80::1]:51820", "link-local"),
        ("ipv6", "[::ffff:255.255.255.255]:51820", "IPv4-mapped"),
        ("ipv6", "[::203.0.113.7]:51820", "reserved"),
        ("ipv6", "2001:db8::7:51820", "expected [ip]:port"),
        ("ipv6", "[2001:db8::7]", "expected [ip]:port"),
        ("ipv6", "[203.0.113.7]:51820", "not an IPv6 address"),
        ("ipv6", "[::ffff:203.0.113.7]:51820", "IPv4-mapped"),
        ("ipv6", "[fe80::1%eth0]:51820", "zone ids"),
        ("ipv6", "[::]:51820", "cannot be a peer's address"),
        ("ipv6", "[ff02::1]:51820", "cannot be a peer's address"),
        ("ipv6", "[2001:db8::7]:99999", "outside 1..65535"),
        ("ipv6", "[" + "1" * 80 + "]:1", "too long"),
    ],
)
def test_bad_endpoints_are_refused_with_the_reason(field: str, endpoint: str, reason: str) -> None:
    with pytest.raises(RecordError, match=re.escape(reason)):
        EndpointRecord(**{field: endpoint})
    with pytest.raises(RecordError, match=re.escape(reason)):
        EndpointRecord.from_json(json.dumps({field: endpoint}))


def test_a_record_needs_an_endpoint() -> None:
    with pytest.raises(RecordError, match="neither"):
        EndpointRecord()
    with pytest.raises(RecordError, match="neither"):
        EndpointRecord.from_json(b'{"ts":5}')
    with pytest.raises(RecordError, match="neither"):
        EndpointRecord.from_json(b'{"ipv4":"","ipv6":null}')


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"ipv4":"203.0.113.7:1"', "not valid JSON"),
        (b'["203.0.113.7:1"]', "not a JSON object"),
        (b'"203.0.113.7:1"', "not a JSON object"),
        (b'{"ipv4":17}', "must be a string"),
        (b'{"ipv4":"203.0.113.7:1","ts":true}', "ts must be"),
        (b'{"ipv4":"203.0.113.7:1","ts":-1}', "ts must be"),
        (b'{"ipv4":"203.0.113.7:1","ts":1.5}', "ts must be"),
        (b'{"ipv4":"203.0.113.7:1","ts":"1"}', "ts must be"),
        (b"[" * 1000 + b"]" * 1000, "nested too deep"),
        (b'{"ipv4":"203.0.113.7:1","x":' + b"[" * 1500 + b"]" * 1500 + b"}", "nested too deep"),
        (b'{"ipv4":"203.0.113.7:1","x":"' + b"a" * 5000 + b'"}', "too long"),
    ],
)
def test_malformed_plaintext_raises_record_error(data: bytes, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        EndpointRecord.from_json(data)


def test_a_sealed_record_nested_1000_deep_is_a_record_error() -> None:
    """A peer (who holds the keys) can seal anything; opening it must still only refuse it."""
    deep = b'{"ipv4":"203.0.113.7:1","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(RecordError, match="nested too deep"):
        crypto.open_record(crypto.seal(deep, A_PRIV, B_PUB), B_PRIV, A_PUB)


def test_unknown_fields_are_ignored_and_go_empty_strings_are_absent() -> None:
    record = EndpointRecord.from_json(b'{"ipv4":"203.0.113.7:51820","ipv6":"","v":2,"ts":9}')
    assert record == EndpointRecord(ipv4="203.0.113.7:51820", ts=9)
    assert record.endpoints == ("203.0.113.7:51820",)


# -- sealing ---------------------------------------------------------------------------------


def test_round_trip_with_random_nonces() -> None:
    plain = EndpointRecord("198.51.100.10:40000", "[2001:db8::10]:40000", ts=123).to_json()
    first = crypto.seal(plain, A_PRIV, B_PUB)
    second = crypto.seal(plain, A_PRIV, B_PUB)
    assert first != second  # fresh nonce each time
    assert first == first.lower() and len(first) == 2 * (24 + 16 + len(plain))
    assert crypto.open_sealed(first, B_PRIV, A_PUB) == plain
    assert crypto.open_sealed(second, B_PRIV, A_PUB) == plain


def test_opening_accepts_upper_case_hex_and_surrounding_whitespace() -> None:
    assert crypto.open_sealed(f" {VECTOR_SEALED.upper()}\n", B_PRIV, A_PUB) == VECTOR_PLAIN


@pytest.mark.parametrize("position", [0, 23, 24, 39, 40, 63])
def test_a_tampered_value_does_not_open(position: int) -> None:
    raw = bytearray(bytes.fromhex(VECTOR_SEALED))
    raw[position] ^= 0x01  # nonce, tag and ciphertext bytes
    with pytest.raises(RecordError, match="does not open"):
        crypto.open_sealed(raw.hex(), B_PRIV, A_PUB)


def test_a_value_for_other_keys_does_not_open() -> None:
    with pytest.raises(RecordError, match="does not open"):
        crypto.open_sealed(VECTOR_SEALED, b"\x03" * 32, A_PUB)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("zz" * 50, "not hex"),
        ("abc", "not hex"),
        ("00 11" * 30, "not hex"),
        ("ünicode", "not hex"),
        ("", "too short"),
        ("00" * 39, "too short"),
    ],
)
def test_bad_values_raise_record_error(value: str, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        crypto.open_sealed(value, B_PRIV, A_PUB)


def test_wrong_key_lengths_never_echo_the_key() -> None:
    secret = b"\x07" * 31
    with pytest.raises(ValueError, match="32 bytes") as info:
        crypto.seal(VECTOR_PLAIN, secret, B_PUB)
    assert secret.hex() not in str(info.value) and repr(secret) not in str(info.value)
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.publish_key(A_PUB, B_PUB[:16])
    with pytest.raises(ValueError, match="nonce"):
        crypto.seal(VECTOR_PLAIN, A_PRIV, B_PUB, nonce=b"\x00" * 8)


# -- reflection and replay -------------------------------------------------------------------


def _publish(
    store: dict[str, str],
    own_priv: bytes,
    peer_pub: bytes,
    record: EndpointRecord,
    guard: RecordGuard,
) -> str:
    value = crypto.seal(record.to_json(), own_priv, peer_pub)
    store[crypto.publish_key(crypto.public_key(own_priv), peer_pub)] = value
    guard.note_published(value)
    return value


def test_reflected_value_opens_but_is_refused() -> None:
    store: dict[str, str] = {}
    a_guard = RecordGuard()
    mine = EndpointRecord(ipv4="198.51.100.10:40000", ts=100)
    published = _publish(store, A_PRIV, B_PUB, mine, a_guard)
    # An attacker copies A's published value into A's fetch slot (B's publish slot).
    store[crypto.fetch_key(A_PUB, B_PUB)] = published
    fetched = store[crypto.fetch_key(A_PUB, B_PUB)]
    record = crypto.open_record(fetched, A_PRIV, B_PUB)  # the weakness: it opens
    assert record == mine
    with pytest.raises(RecordError, match=r"^reflected: the value is one we published"):
        a_guard.check(fetched, record)


def test_reflection_of_an_old_value_is_caught_by_our_endpoint() -> None:
    guard = RecordGuard(remember=1)
    old = crypto.seal(EndpointRecord(ipv6="[2001:db8::a]:40000", ts=1).to_json(), A_PRIV, B_PUB)
    guard.note_published(old)
    guard.note_published("00" * 60)  # the old value is forgotten
    record = crypto.open_record(old, A_PRIV, B_PUB)
    with pytest.raises(RecordError, match=r"^reflected: .*\[2001:db8::a\]:40000"):
        guard.check(old, record, own_endpoints=("[2001:DB8:0::A]:40000",))


def test_the_peers_own_record_passes_the_guard() -> None:
    guard = RecordGuard()
    guard.note_published(crypto.seal(b'{"ipv4":"198.51.100.10:40000"}', A_PRIV, B_PUB))
    value = crypto.seal(b'{"ipv4":"203.0.113.20:51820","ts":5}', B_PRIV, A_PUB)
    record = crypto.open_record(value, A_PRIV, B_PUB)
    guard.check(value, record, own_endpoints=("198.51.100.10:40000", "not an endpoint"))
    guard.accept(record)
    assert guard.newest_ts == 5


def test_replayed_older_record_is_refused() -> None:
    guard = RecordGuard()
    old = EndpointRecord(ipv4="203.0.113.20:40000", ts=100)
    new = EndpointRecord(ipv4="203.0.113.20:40001", ts=200)
    assert guard.check("aa", old) is True
    guard.accept(old, "aa")
    assert guard.check("bb", new) is True
    guard.accept(new, "bb")
    # the old record again: never while the tunnel works, never a value accepted before
    with pytest.raises(RecordError, match=r"^replayed: ts 100 older than 200, while the tunnel"):
        guard.check("cc", old, current="203.0.113.20:40001", live=True)
    with pytest.raises(RecordError, match=r"^replayed: ts 100 older than 200, and accepted"):
        guard.check("aa", old, current="203.0.113.20:40001", live=False)
    assert guard.check("bb", new, current="203.0.113.20:40001", live=True) is True  # dedup
    newer = EndpointRecord(ipv4="203.0.113.20:40002", ts=300)
    assert guard.check("dd", newer, live=True) is True  # in order: even a live tunnel moves
    guard.accept(newer, "dd")
    with pytest.raises(RecordError, match="older than 300, while the tunnel is up"):
        guard.check("bb", new, current="203.0.113.20:40002", live=True)


def test_an_out_of_order_record_naming_the_endpoint_in_use() -> None:
    guard = RecordGuard()
    here = "203.0.113.20:40001"
    guard.accept(EndpointRecord(ipv4=here, ts=200), "aa")
    older = EndpointRecord(ipv4=here, ts=150)  # a replay, or the peer's fast clock was fixed
    with pytest.raises(RecordError, match="older than 200, while the tunnel is up"):
        guard.check("bb", older, current=here, live=True)  # reported, changes nothing
    assert guard.check("bb", older, current=here, live=False) is False  # harmless
    back_on_go = EndpointRecord(ipv4=here)  # stunmesh-go where the peer was: silent
    assert guard.check("cc", back_on_go, current=here, live=True) is False
    assert guard.newest_ts == 200


def test_ts_less_records_of_a_stunmesh_go_peer_stay_readable() -> None:
    guard = RecordGuard()
    go_record = EndpointRecord.from_json(b'{"ipv4":"203.0.113.20:51820"}')
    for _ in range(3):
        guard.check("aa", go_record)
        guard.accept(go_record)
    assert guard.newest_ts is None


def test_a_peer_back_on_stunmesh_go_is_not_locked_out() -> None:
    """A ts-less record after ts records: a downgrade replay, or the peer going back."""
    guard = RecordGuard()
    e1, e2 = "203.0.113.20:51820", "203.0.113.20:40007"
    guard.accept(EndpointRecord(ipv4=e1, ts=50), "aa")
    back = EndpointRecord(ipv4=e2)  # stunmesh-go's record: no ts
    with pytest.raises(
        RecordError, match=r"^replayed: record without ts after ts 50 was accepted, while"
    ):
        guard.check("bb", back, current=e1, live=True)  # a working tunnel is never moved
    assert guard.check("bb", back, current=e1, live=False) is False  # tunnel down: fallback
    guard.accept(back, "bb")
    assert guard.newest_ts == 50  # the mark stays: older ts records are still out of order
    # stunmesh-go republishes (fresh nonce, same endpoint): harmless, even with a live tunnel
    assert guard.check("cc", EndpointRecord(ipv4=e2), current=e2, live=True) is False
    # but the value it sent before, replayed after it moved on, is refused
    with pytest.raises(RecordError, match="accepted before"):
        guard.check("bb", back, current="203.0.113.20:40008", live=False)
    # nor does the peer's last stunmeshd record (equal ts) come back as in order
    with pytest.raises(RecordError, match="superseded by a record without ts, while the tunnel"):
        guard.check("dd", EndpointRecord(ipv4=e1, ts=50), current=e2, live=True)
    guard.reset()
    assert guard.check("bb", back) is True
