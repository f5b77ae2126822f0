"""Record keys and sealed endpoint records, byte-compatible with stunmesh-go.

No I/O here: the engine feeds bytes in and gets bytes out, so every rule of the wire format
(``docs/wire-format.md``) is testable against its vectors. On top of the format, stunmeshd
adds what stunmesh-go lacks: an optional ``ts`` field and a :class:`RecordGuard` that refuses
reflected and replayed records.
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import json
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# libsodium's crypto_box itself, as Go's nacl/box.Seal calls it (nacl.public's Box wraps the
# same calls in classes this module has no use for)
from nacl.bindings import crypto_box, crypto_box_NONCEBYTES, crypto_box_open, crypto_scalarmult_base
from nacl.exceptions import CryptoError

from stunmeshd.endpoint_policy import refusal
from stunmeshd.errors import RecordError

KEY_LEN = 32  # WireGuard / X25519 key length
NONCE_LEN = crypto_box_NONCEBYTES  # 24
TAG_LEN = 16  # Poly1305
_MAX_ENDPOINT_TEXT = 64  # longest "[v6]:port" is 47 chars; longer is garbage
# A record is about 100 bytes; room for fields a future version may add, not for abuse.
MAX_RECORD_JSON = 4096


def _check_key(key: bytes, what: str) -> None:
    # Never echo the key itself: it may be a private key.
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise ValueError(f"{what} must be {KEY_LEN} bytes")


# -- record keys ----------------------------------------------------------------------------


def publish_key(own_pub: bytes, peer_pub: bytes) -> str:
    """The store key under which I write my endpoint for ``peer_pub``: SHA1(own ‖ peer)."""
    _check_key(own_pub, "own public key")
    _check_key(peer_pub, "peer public key")
    return hashlib.sha1(bytes(own_pub) + bytes(peer_pub), usedforsecurity=False).hexdigest()


def fetch_key(own_pub: bytes, peer_pub: bytes) -> str:
    """The store key under which ``peer_pub`` writes its endpoint for me: SHA1(peer ‖ own)."""
    return publish_key(peer_pub, own_pub)


def public_key(private: bytes) -> bytes:
    """The X25519 public key of a WireGuard private key (what ``wg pubkey`` prints, raw)."""
    _check_key(private, "private key")
    return crypto_scalarmult_base(bytes(private))


# -- endpoints and the plaintext --------------------------------------------------------------


def _port(text: str, port: str) -> int:
    if not (port.isascii() and port.isdigit() and len(port) <= 5):
        raise RecordError(f"endpoint {text!r}: port {port!r} is not a number")
    value = int(port)
    if not 1 <= value <= 65535:
        raise RecordError(f"endpoint {text!r}: port {value} is outside 1..65535")
    return value


def normalize_endpoint(text: str, family: int) -> str:
    """``ip:port`` (family 4) or ``[ip]:port`` (family 6), checked and in canonical form.

    IPv6 comes back in RFC 5952 form. Hosts must be IP literals of the right family, and
    ``endpoint_policy`` must accept them (no loopback, multicast, ...: no peer can be reached
    there). Raises RecordError with the reason.
    """
    if not isinstance(text, str):
        raise RecordError(f"ipv{family} endpoint must be a string, not {type(text).__name__}")
    shown = text[:_MAX_ENDPOINT_TEXT]
    if len(text) > _MAX_ENDPOINT_TEXT:
        raise RecordError(f"ipv{family} endpoint {shown!r}...: too long")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    if family == 4:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise RecordError(f"ipv4 endpoint {shown!r}: expected ip:port")
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise RecordError(f"ipv4 endpoint {shown!r}: {host!r} is not an IPv4 address") from None
        port_number = _port(shown, port)
        _check_policy(shown, family, address, port_number)
        return f"{address}:{port_number}"
    if family == 6:
        if not text.startswith("[") or "]:" not in text:
            raise RecordError(f"ipv6 endpoint {shown!r}: expected [ip]:port")
        host, _, port = text[1:].partition("]:")
        if "%" in host:
            raise RecordError(f"ipv6 endpoint {shown!r}: zone ids are not allowed")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise RecordError(f"ipv6 endpoint {shown!r}: {host!r} is not an IPv6 address") from None
        port_number = _port(shown, port)
        _check_policy(shown, family, address, port_number)
        return f"[{address.compressed}]:{port_number}"
    raise ValueError(f"family must be 4 or 6, not {family!r}")


def _check_policy(
    shown: str, family: int, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    reason = refusal(address, port)
    if reason is not None:
        raise RecordError(f"ipv{family} endpoint {shown!r} cannot be a peer's address: {reason}")


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """The plaintext of a record: ``{"ipv4":"ip:port","ipv6":"[ip]:port","ts":N}``.

    ``ipv4``/``ipv6`` are normalised on construction (RFC 5952 for IPv6); at least one must
    be present. ``ts`` (unix time in milliseconds: two records of one second must still be
    ordered, e.g. a restart right after a publish) is stunmeshd's addition for replay
    protection; stunmesh-go ignores it and never writes it. Invalid content raises RecordError.
    """

    ipv4: str | None = None
    ipv6: str | None = None
    ts: int | None = None

    def __post_init__(self) -> None:
        ipv4 = normalize_endpoint(self.ipv4, 4) if self.ipv4 else None
        ipv6 = normalize_endpoint(self.ipv6, 6) if self.ipv6 else None
        if ipv4 is None and ipv6 is None:
            raise RecordError("record has neither an ipv4 nor an ipv6 endpoint")
        ts = self.ts
        if ts is not None and (
            isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 2**63
        ):
            raise RecordError(f"record ts must be a non-negative integer, not {ts!r:.32}")
        object.__setattr__(self, "ipv4", ipv4)
        object.__setattr__(self, "ipv6", ipv6)

    @classmethod
    def stamped(cls, ipv4: str | None = None, ipv6: str | None = None) -> EndpointRecord:
        """A record carrying the current time as ``ts``: what stunmeshd publishes."""
        return cls(ipv4, ipv6, int(time.time() * 1000))

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints present, ipv4 first."""
        return tuple(e for e in (self.ipv4, self.ipv6) if e)

    def to_json(self, *, with_ts: bool = True) -> bytes:
        """Compact JSON in stunmesh-go's key order; empty fields omitted."""
        fields: dict[str, Any] = {}
        if self.ipv4:
            fields["ipv4"] = self.ipv4
        if self.ipv6:
            fields["ipv6"] = self.ipv6
        if with_ts and self.ts is not None:
            fields["ts"] = self.ts
        return json.dumps(fields, separators=(",", ":")).encode()

    @property
    def fingerprint(self) -> str:
        """The endpoint part without ``ts`` — exactly the plaintext stunmesh-go would write.

        Dedup compares this (stunmesh-go compares its plaintext, which has no ts).
        """
        return self.to_json(with_ts=False).decode()

    @classmethod
    def from_json(cls, data: bytes | str) -> EndpointRecord:
        """Parse and validate an opened record. Unknown fields are ignored, as Go does.

        Whatever the bytes, the only exception is RecordError: a record is small, and JSON
        nested deeper than Python's recursion limit is refused like any other bad JSON.
        """
        if len(data) > MAX_RECORD_JSON:
            raise RecordError(f"record is too long ({len(data)} bytes, at most {MAX_RECORD_JSON})")
        try:
            fields = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise RecordError("record is not valid JSON") from None
        except RecursionError:
            raise RecordError("record is not valid JSON: nested too deep") from None
        if not isinstance(fields, dict):
            raise RecordError("record is not a JSON object")
        values: dict[str, Any] = {}
        for name in ("ipv4", "ipv6"):
            value = fields.get(name)
            if value is not None and not isinstance(value, str):
                raise RecordError(f"record field {name} must be a string")
            values[name] = value or None  # Go writes "" as absent (omitempty)
        return cls(values["ipv4"], values["ipv6"], fields.get("ts"))


# -- sealing --------------------------------------------------------------------------------


def _check_keys(own_private: bytes, peer_public: bytes) -> None:
    _check_key(own_private, "own private key")
    _check_key(peer_public, "peer public key")


def seal(
    record_json: bytes, own_private: bytes, peer_public: bytes, *, nonce: bytes | None = None
) -> str:
    """lower-hex(nonce ‖ tag ‖ ciphertext) of NaCl crypto_box, as stunmesh-go stores it.

    ``nonce`` is for test vectors only; by default a fresh random one is used.
    """
    _check_keys(own_private, peer_public)
    if nonce is None:
        nonce = os.urandom(NONCE_LEN)
    elif len(nonce) != NONCE_LEN:
        raise ValueError(f"nonce must be {NONCE_LEN} bytes")
    sealed = crypto_box(bytes(record_json), nonce, bytes(peer_public), bytes(own_private))
    return (nonce + sealed).hex()


def open_sealed(value_hex: str, own_private: bytes, peer_public: bytes) -> bytes:
    """Open a stored value; RecordError if it is not hex, too short or fails authentication."""
    _check_keys(own_private, peer_public)
    try:
        raw = binascii.unhexlify(value_hex.strip().encode("ascii"))
    except (ValueError, AttributeError, UnicodeEncodeError):  # binascii.Error is a ValueError
        raise RecordError("record value is not hex") from None
    if len(raw) < NONCE_LEN + TAG_LEN:
        raise RecordError(f"record value is too short ({len(raw)} bytes)")
    try:
        return crypto_box_open(
            raw[NONCE_LEN:], raw[:NONCE_LEN], bytes(peer_public), bytes(own_private)
        )
    except CryptoError:
        raise RecordError("record does not open: tampered, or sealed for other keys") from None


def open_record(value_hex: str, own_private: bytes, peer_public: bytes) -> EndpointRecord:
    """Open and parse in one step (the usual fetch path)."""
    return EndpointRecord.from_json(open_sealed(value_hex, own_private, peer_public))


# -- reflection and replay ------------------------------------------------------------------


def _canonical_endpoints(endpoints: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for text in endpoints:
        family = 6 if isinstance(text, str) and text.startswith("[") else 4
        try:
            found.add(normalize_endpoint(text, family))
        except RecordError:
            continue  # not a usable endpoint, so nothing can name it
    return found


class RecordGuard:
    """Refuses reflected and replayed records from one peer. Keep one per (device, peer).

    stunmesh-go's box uses one shared secret for both directions, so anyone who can write to
    the store can copy my own record into my fetch slot and it still opens; and on OpenDHT
    anyone can put an old sealed record of the peer back under its key. Rules:

    * **reflected** — the value is byte-identical to one of the last ``remember`` values I
      published for this peer, or the record names one of my own endpoints: refused.
    * **in order** — no ``ts`` accepted yet from this peer, or ``ts`` newer than the newest
      accepted, or equal to it (a peer that dedups re-serves its record) as long as no
      out-of-order record was accepted since (then the peer has moved on from it).
    * **out of order** — a ``ts`` older than the newest accepted, or no ``ts`` after one was
      accepted: what a replay looks like, but also what a peer sends after going back to
      stunmesh-go (which never writes ``ts``) or after its fast clock was corrected. Such a
      record is accepted only when it cannot hurt or the tunnel is already down:

      - without ``ts`` and naming the endpoint in use (``current``): accepted, it changes
        nothing (a peer back on stunmesh-go at its old endpoint);
      - the tunnel is up (``live``: a recent handshake): refused — a working tunnel is never
        moved by an out-of-order record, and an older ``ts`` is a replay to report;
      - it names the endpoint in use: accepted, it changes nothing;
      - its value is one accepted before (the last ``remember``): refused, a verbatim replay;
      - otherwise accepted, as a *fallback* that the engine uses only when no in-order record
        offers another endpoint; the ``ts`` mark is not lowered.

    What this still stops: no replay moves a working tunnel; no replay of a record read
    before is taken again; a peer on stunmeshd (records with ``ts``) always wins over replays
    of its older records, because its in-order record is preferred. What it no longer stops:
    while the tunnel is down anyway, an old record never read before may be applied, until
    the peer's next in-order record replaces it. A restart starts afresh (memory only).
    """

    def __init__(self, *, remember: int = 64) -> None:
        self._published: deque[str] = deque(maxlen=remember)
        self._accepted: deque[str] = deque(maxlen=remember)
        self._newest_ts: int | None = None
        self._moved_on = False  # an out-of-order record was accepted after the newest ts

    @property
    def newest_ts(self) -> int | None:
        """The newest ts accepted from the peer (None: none yet)."""
        return self._newest_ts

    def note_published(self, value_hex: str) -> None:
        """Remember a value I stored for this peer, to recognise it if it comes back."""
        self._published.append(value_hex.strip().lower())

    def check(
        self,
        value_hex: str,
        record: EndpointRecord,
        own_endpoints: Iterable[str] = (),
        *,
        current: str = "",
        live: bool = False,
    ) -> bool:
        """True for an in-order record, False for an acceptable out-of-order one (fallback).

        Raises RecordError ("reflected: ..." / "replayed: ...") if the record is refused.
        ``own_endpoints``: my current public endpoints (``ip:port`` / ``[ip]:port``);
        ``current``: the peer's endpoint in use; ``live``: its tunnel has a recent handshake.
        """
        value = value_hex.strip().lower()
        if value in self._published:
            raise RecordError("reflected: the value is one we published for this peer")
        mine = _canonical_endpoints(own_endpoints)
        for endpoint in record.endpoints:
            if endpoint in mine:
                raise RecordError(f"reflected: the record names our own endpoint {endpoint}")
        newest = self._newest_ts
        if newest is None or (
            record.ts is not None
            and (record.ts > newest or (record.ts == newest and not self._moved_on))
        ):
            return True
        if record.ts is None:
            why = f"record without ts after ts {newest} was accepted"
        elif record.ts == newest:
            why = f"ts {record.ts} was superseded by a record without ts"
        else:
            why = f"ts {record.ts} older than {newest}"
        names_current = bool(current) and current in record.endpoints
        if names_current and record.ts is None:
            return False  # a peer back on stunmesh-go where it was: changes nothing
        if live:
            raise RecordError(f"replayed: {why}, while the tunnel is up")
        if names_current:
            return False  # changes nothing
        if value in self._accepted:
            raise RecordError(f"replayed: {why}, and accepted before")
        return False

    def accept(self, record: EndpointRecord, value_hex: str = "") -> None:
        """Note a record that passed ``check`` and is being used (raises the ts mark)."""
        if value_hex:
            self._accepted.append(value_hex.strip().lower())
        newest = self._newest_ts
        if record.ts is not None and (newest is None or record.ts > newest):
            self._newest_ts, self._moved_on = record.ts, False
        elif newest is not None and (record.ts is None or record.ts < newest):
            self._moved_on = True  # a fallback: the newest ts record is history now

    def reset(self) -> None:
        """Forget everything about the peer."""
        self._published.clear()
        self._accepted.clear()
        self._newest_ts = None
        self._moved_on = False


__all__ = [
    "EndpointRecord",
    "RecordGuard",
    "fetch_key",
    "normalize_endpoint",
    "open_record",
    "open_sealed",
    "public_key",
    "publish_key",
    "seal",
]
