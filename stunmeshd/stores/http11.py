"""One HTTP/1.1 exchange or stream over asyncio, with h11 doing every bit of HTTP.

The OpenDHT store's client: aiohttp's import alone (email, http.client, yarl, multidict...)
costs a daemon ~12 MB of its ~30 MB, h11 ~0.5 MB. h11 is sans-IO (it parses and frames,
keeps each connection's request/response cycle, bounds a head with
``max_incomplete_event_size``); this module only moves its bytes over asyncio streams:
connections (TLS with a context made once, on the first https URL, that reads a CA
certificate only when a server's chain names it: see ``tls_context``), an idle pool per
origin, redirects, bounded bodies.

What it keeps from aiohttp, which the store used before: a reused connection that fails
before any byte of the answer (the server closed it while idle) is retried once on a fresh
one (aiohttp did so for GET only; here a POST too: the OpenDHT store's one POST, a put,
repeated adds the same envelope, which readers fold into one); a connection that errored,
was cut short or that the server will close is never pooled; idle pooled connections are
closed after ``IDLE_SECONDS``; redirects (301, 302, 303, 307, 308) are followed, at most
``MAX_REDIRECTS`` answers, 303 and a POST's 301/302 becoming a GET without body
(stunmesh-go's Go net/http follows them too: an http:// proxy that redirects to https://
keeps working). Failures are ``HTTPFailure`` with a message fit for a log: host,
port and what went wrong, never a header. Time limits are the caller's (``asyncio.timeout``):
a cancelled exchange closes its connection.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import h11

MAX_HEAD = 16 << 10  # bytes of an incomplete answer head h11 holds (a head: at most + one read)
MAX_REDIRECTS = 10  # aiohttp's: the 10th redirect answer is a failure
IDLE_SECONDS = 15.0  # aiohttp's keep-alive: an unused pooled connection is closed after it
READ_SIZE = 64 << 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HASH_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")  # a CA directory's lookup names
_DRAIN = 64 << 10  # a redirect's body is read (to reuse its connection) up to this much


class HTTPFailure(Exception):
    """A transport or protocol failure; the message names host and port, never a header."""


class _Stale(HTTPFailure):
    """The connection failed before any byte of the answer (retried once if it was reused)."""


@dataclass(frozen=True)
class Origin:
    """Where a connection goes: pooled connections are shared per origin."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _target(url: str) -> tuple[Origin, str, str]:
    """The origin, the request target and the Host header of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HTTPFailure("not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HTTPFailure("not a valid port in the URL") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if parts.port is None else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, host, port), target, host_header


class _Connection:
    """One TCP (or TLS) connection and its h11 state: one request/response cycle at a time."""

    def __init__(
        self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.answered = False  # a byte of the current answer arrived
        self.idle_handle: asyncio.TimerHandle | None = None

    @property
    def usable(self) -> bool:
        """Open, between cycles, and the server has not closed its side."""
        return (
            self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.reader.exception() is None
        )

    async def send(self, *events: h11.Event) -> None:
        try:
            for event in events:
                data = self.h11.send(event)
                if data:
                    self.writer.write(data)
            await self.writer.drain()
        except h11.LocalProtocolError:
            raise HTTPFailure(f"{self.origin}: not a valid HTTP/1.1 request") from None
        except OSError as exc:
            raise _Stale(f"connection to {self.origin} broke: {_words(exc)}") from None

    async def next_event(self) -> h11.Event:
        """The next event of the answer (h11.Response, h11.Data, h11.EndOfMessage...)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise HTTPFailure(f"{self.origin}: answer head over {MAX_HEAD} bytes") from None
                if not self.answered:
                    raise _Stale(f"{self.origin} closed the connection without answering") from None
                if self.reader.at_eof():
                    raise HTTPFailure(f"{self.origin} closed the connection mid-answer") from None
                raise HTTPFailure(f"{self.origin} answered with broken HTTP") from None
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(READ_SIZE)  # HTTPFailure once aborted
                except OSError as exc:
                    failure = _Stale if not self.answered else HTTPFailure
                    raise failure(f"connection to {self.origin} broke: {_words(exc)}") from None
                self.answered = self.answered or bool(data)
                self.h11.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                if not self.answered:
                    raise _Stale(f"{self.origin} closed the connection without answering")
                raise HTTPFailure(f"{self.origin} closed the connection mid-answer")
            if not isinstance(event, h11.Event):  # PAUSED: the answer is complete
                raise HTTPFailure(f"{self.origin}: read past the end of the answer")
            return event

    async def head(self) -> h11.Response:
        """The answer's status and headers (1xx answers skipped)."""
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise HTTPFailure(f"{self.origin} answered with broken HTTP")

    async def chunk(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        event = await self.next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return b""
        raise HTTPFailure(f"{self.origin} answered with broken HTTP")

    async def body(self, limit: int) -> tuple[bytes, bool]:
        """The body, but no more than ``limit`` + 1 bytes; and whether it was read whole."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await self.chunk():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(chunks)[: limit + 1], False
        return b"".join(chunks), True

    def next_cycle(self) -> bool:
        """Ready the connection for the next request; False if it must be closed instead."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.answered = False
            return self.usable
        return False

    def close(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        self.writer.close()


class Stream:
    """An answer whose body is read piece by piece as it arrives (a watch); never pooled."""

    def __init__(self, conn: _Connection, status: int) -> None:
        self._conn = conn
        self.status = status

    @property
    def socket(self) -> Any:
        """The connection's socket (for socket options), if the transport has one."""
        return self._conn.writer.get_extra_info("socket")

    async def read_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises HTTPFailure (also on abort)."""
        return await self._conn.chunk()

    async def read(self, limit: int) -> bytes:
        """The rest of the body, but no more than ``limit`` + 1 bytes."""
        body, _ = await self._conn.body(limit)
        return body

    def abort(self, reason: str) -> None:
        """End the stream now: a reader parked on it wakes with HTTPFailure(reason)."""
        self._conn.reader.set_exception(HTTPFailure(reason))
        self._conn.close()

    def close(self) -> None:
        self._conn.close()


class HTTPClient:
    """Requests with pooled keep-alive connections, and streams; for one event loop.

    ``fetch`` bodies are bounded by the caller's ``limit``; ``stream`` gives the body as it
    comes. ``close`` closes idle connections and aborts every open stream. ``max_idle``
    connections are kept per origin: as many as the caller lets requests run at once, or a
    burst reconnects for all but that many.
    """

    def __init__(self, *, user_agent: str, max_idle: int = 8) -> None:
        self.user_agent = user_agent
        self.max_idle = max_idle
        self.closed = False
        self._idle: dict[Origin, list[_Connection]] = {}
        self._streams: set[Stream] = set()
        self._tls: ssl.SSLContext | None = None

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        limit: int,
        pooled: bool = True,
    ) -> tuple[int, bytes]:
        """Status and body (at most ``limit`` + 1 bytes: more means "too big"), redirects
        followed; on a pooled connection unless ``pooled`` is false (then closed after)."""
        conn, status = await self._exchange(method, url, body, content_type, pooled=pooled)
        try:
            data, whole = await conn.body(limit)
        except BaseException:
            conn.close()
            raise
        if pooled:
            self._release(conn, whole)
        else:
            conn.close()
        return status, data

    async def stream(self, url: str) -> Stream:
        """A GET whose body is read as it arrives (redirects followed; a connection of its
        own); close it (or ``close`` the client) when done."""
        conn, status = await self._exchange("GET", url, None, None, pooled=False)
        stream = Stream(conn, status)
        self._streams.add(stream)
        return stream

    def forget(self, stream: Stream) -> None:
        """Close ``stream`` and stop tracking it."""
        self._streams.discard(stream)
        stream.close()

    async def close(self, reason: str = "the client was closed") -> None:
        """Close every connection; open streams end (their readers wake with
        HTTPFailure(reason))."""
        self.closed = True
        for stream in self._streams:
            stream.abort(reason)
        self._streams.clear()
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def _exchange(
        self, method: str, url: str, body: bytes | None, content_type: str | None, *, pooled: bool
    ) -> tuple[_Connection, int]:
        """The connection holding the final answer (its head read, body unread), and its
        status, after following redirects."""
        redirects = 0
        while True:
            origin, target, host = _target(url)
            headers = [("Host", host), ("User-Agent", self.user_agent), ("Accept", "*/*")]
            if body is not None:
                if content_type is not None:
                    headers.append(("Content-Type", content_type))
                headers.append(("Content-Length", str(len(body))))
            try:
                request = h11.Request(method=method, target=target, headers=headers)
            except h11.LocalProtocolError:  # a URL (or a redirect's) with spaces, say
                raise HTTPFailure(f"{origin}: not a valid request target") from None
            conn, head = await self._send(origin, request, body, pooled=pooled)
            location = _header(head.headers, b"location")
            if head.status_code not in REDIRECTS or location is None:
                return conn, head.status_code
            redirects += 1
            if redirects >= MAX_REDIRECTS:
                conn.close()
                raise HTTPFailure(f"{origin}: too many redirects ({MAX_REDIRECTS})")
            if head.status_code == 303 or (head.status_code in (301, 302) and method == "POST"):
                method, body, content_type = "GET", None, None
            try:
                url = urljoin(url, location.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                url = ""
            if urlsplit(url).scheme not in ("http", "https"):
                conn.close()
                raise HTTPFailure(f"{origin} redirected to a URL that is not http(s)")
            if pooled:
                try:
                    _, whole = await conn.body(_DRAIN)
                except BaseException:
                    conn.close()
                    raise
                self._release(conn, whole)
            else:
                conn.close()

    async def _send(
        self, origin: Origin, request: h11.Request, body: bytes | None, *, pooled: bool
    ) -> tuple[_Connection, h11.Response]:
        """Send ``request`` and read the answer's head: on a pooled connection if there is
        one, again on a fresh one if that failed before answering."""
        while True:
            conn = self._take(origin) if pooled else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            try:
                events: list[h11.Event] = [request]
                if body:
                    events.append(h11.Data(data=body))
                events.append(h11.EndOfMessage())
                await conn.send(*events)
                return conn, await conn.head()
            except _Stale:
                conn.close()
                if reused:
                    continue  # the server closed it while idle: once more, fresh
                raise
            except BaseException:
                conn.close()
                raise

    async def _connect(self, origin: Origin) -> _Connection:
        if self.closed:
            raise HTTPFailure("the client was closed")
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = await asyncio.to_thread(tls_context)  # reads CA files
            tls = self._tls
        try:
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls else None,
                happy_eyeballs_delay=0.25,
                limit=READ_SIZE,
            )
        except (OSError, ValueError) as exc:  # ValueError: a name IDNA cannot encode
            raise HTTPFailure(f"cannot connect to {origin}: {_words(exc)}") from None
        if self.closed:  # close() ran while connecting
            writer.close()
            raise HTTPFailure("the client was closed")
        return _Connection(origin, reader, writer)

    def _take(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            if conn.idle_handle is not None:
                conn.idle_handle.cancel()
                conn.idle_handle = None
            if conn.usable:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection, whole: bool) -> None:
        """Pool ``conn`` if its answer was read whole and both sides keep it open."""
        conns = self._idle.setdefault(conn.origin, [])
        if self.closed or not whole or not conn.next_cycle() or len(conns) >= self.max_idle:
            conn.close()
            return
        conns.append(conn)
        loop = asyncio.get_running_loop()
        conn.idle_handle = loop.call_later(IDLE_SECONDS, self._expire, conn)

    def _expire(self, conn: _Connection) -> None:
        conns = self._idle.get(conn.origin, [])
        if conn in conns:
            conns.remove(conn)
        conn.idle_handle = None
        conn.close()


def tls_context() -> ssl.SSLContext:
    """A context that checks servers against the system's CAs, holding only the CAs it uses.

    ``ssl.create_default_context()`` loads the whole CA bundle file, ~140 certificates and
    ~1.2 MB of a daemon's RSS, at the first https URL. From a hashed CA directory (Debian's
    /etc/ssl/certs, kept by update-ca-certificates) OpenSSL reads a root only when a
    server's chain names it. SSL_CERT_FILE, or a directory without hash links, keeps the
    default context. Blocking (reads the directory): call it in a thread.
    """
    capath = ssl.get_default_verify_paths().capath  # SSL_CERT_DIR's, if that is set
    if "SSL_CERT_FILE" not in os.environ and capath and _has_hash_links(capath):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context()


def _has_hash_links(directory: str) -> bool:
    """Whether ``directory`` holds OpenSSL's ``<subject hash>.<n>`` names (c_rehash's)."""
    try:
        with os.scandir(directory) as entries:
            return any(_HASH_NAME.fullmatch(entry.name) for entry in entries)
    except OSError:
        return False


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _words(exc: Exception) -> str:
    """An OS or TLS error in words (no request or answer content is in them)."""
    return str(exc) or type(exc).__name__
