"""The OpenDHT store's HTTP/1.1 client against real loopback servers: keep-alive, retries,
bounds, redirects, TLS with a certificate made here, and a stream ended by close()."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stunmeshd.stores.http11 import (
    MAX_HEAD,
    MAX_REDIRECTS,
    READ_SIZE,
    HTTPClient,
    HTTPFailure,
    tls_context,
)
from stunmeshd.stores.opendht import KEEPALIVE, OpenDHTStore, _enable_keepalive

HANG = b"hang"  # a script's answer: say nothing until the client hangs up


class Last(bytes):
    """A script's answer after which the server hangs up."""


def ok(body: bytes = b"ok", *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


Script = Callable[[int, int, bytes, bytes], Awaitable[bytes | None]]


class RawServer:
    """A loopback server that answers each request with the bytes its script returns (None:
    hang up without answering), so answers can be anything, broken ones included."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection, head, body)
        self.gone = asyncio.Event()  # a client hung up on a HANG answer
        self.hung_up = 0  # connections the client closed between requests
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> RawServer:
        self._server = await asyncio.start_server(self._serve, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        try:
            for index in range(1000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.hung_up += 1
                    return
                found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(found.group(1))) if found else b""
                self.requests.append((conn, head, body))
                answer = await self.script(conn, index, head, body)
                if answer is None:
                    return
                if answer == HANG:
                    await reader.read()
                    self.gone.set()
                    return
                writer.write(answer)
                await writer.drain()
                if isinstance(answer, Last):
                    return
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Script], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script) -> RawServer:
        servers.append(await RawServer(script).start())
        return servers[-1]

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    client = HTTPClient(user_agent="stunmeshd")
    yield client
    await client.close()


async def answer_ok(conn: int, index: int, head: bytes, body: bytes) -> bytes:
    return ok(b"answer %d.%d" % (conn, index))


# -- keep-alive -----------------------------------------------------------------------------


async def test_requests_to_one_origin_reuse_a_connection(raw: Any, client: HTTPClient) -> None:
    server = await raw(answer_ok)
    answers = [await client.fetch("GET", f"{server.url}/k/{i}", limit=100) for i in range(3)]
    assert answers == [(200, b"answer 0.0"), (200, b"answer 0.1"), (200, b"answer 0.2")]
    assert server.connections == 1


async def test_idle_connections_beyond_max_idle_are_closed(raw: Any) -> None:
    both_in = asyncio.Event()

    async def together(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        if len(server.requests) == 2:
            both_in.set()
        await both_in.wait()  # two requests in flight at once: two connections
        return ok()

    server = await raw(together)
    client = HTTPClient(user_agent="stunmeshd", max_idle=1)
    try:
        await asyncio.gather(*(client.fetch("GET", server.url, limit=9) for _ in range(2)))
        for _ in range(100):
            if server.hung_up:
                break
            await asyncio.sleep(0.01)
        assert server.hung_up == 1  # one kept, one closed
        await client.fetch("GET", server.url, limit=9)
        assert server.connections == 2  # the kept one served it
    finally:
        await client.close()


async def test_a_connection_the_server_closes_is_not_reused(raw: Any, client: HTTPClient) -> None:
    async def closing(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return ok(b"bye", "Connection: close")

    server = await raw(closing)
    assert await client.fetch("GET", server.url, limit=100) == (200, b"bye")
    assert await client.fetch("GET", server.url, limit=100) == (200, b"bye")
    assert server.connections == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_reused_connection_that_fails_before_answering_is_retried_once(
    raw: Any, client: HTTPClient, method: str
) -> None:
    async def hang_up_on_the_second(
        conn: int, index: int, head: bytes, body: bytes
    ) -> bytes | None:
        return None if index == 1 else ok(b"fresh %d" % conn)

    server = await raw(hang_up_on_the_second)
    assert await client.fetch("GET", server.url, limit=100) == (200, b"fresh 0")
    status, body = await client.fetch(method, server.url, body=b"{}", limit=100)
    assert (status, body) == (200, b"fresh 1")
    # the request went out twice, the second time on a new connection, body and all
    assert [(conn, b) for conn, _, b in server.requests[1:]] == [(0, b"{}"), (1, b"{}")]


async def test_a_fresh_connection_that_fails_is_not_retried(raw: Any, client: HTTPClient) -> None:
    async def hang_up(conn: int, index: int, head: bytes, body: bytes) -> None:
        return None

    server = await raw(hang_up)
    with pytest.raises(HTTPFailure, match="closed the connection without answering"):
        await client.fetch("GET", server.url, limit=100)
    assert server.connections == 1


async def test_an_answer_cut_short_fails_and_is_not_retried(raw: Any, client: HTTPClient) -> None:
    async def cut(conn: int, index: int, head: bytes, body: bytes) -> bytes | None:
        if index == 0:
            return ok()
        return Last(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    server = await raw(cut)
    await client.fetch("GET", server.url, limit=100)
    with pytest.raises(HTTPFailure, match="closed the connection mid-answer"):
        await client.fetch("GET", server.url, limit=1000)
    assert server.connections == 1


# -- bodies, heads, time --------------------------------------------------------------------


async def test_a_chunked_body_is_read_whole(client: HTTPClient) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"one\n", b"two\n", b"three\n"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async with serve_app({"/": chunked}) as url:
        assert await client.fetch("GET", url, limit=100) == (200, b"one\ntwo\nthree\n")
        stream = await client.stream(url)
        pieces = []
        while piece := await stream.read_chunk():
            pieces.append(piece)
        client.forget(stream)
        assert b"".join(pieces) == b"one\ntwo\nthree\n"


async def test_a_body_over_the_bound_is_cut_and_its_connection_dropped(
    raw: Any, client: HTTPClient
) -> None:
    async def big(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return ok(b"x" * 100_000)

    server = await raw(big)
    status, body = await client.fetch("GET", server.url, limit=1000)
    assert status == 200 and body == b"x" * 1001  # one byte more than the bound: "too big"
    await client.fetch("GET", server.url, limit=1000)
    assert server.connections == 2  # the unread rest made the first connection unusable


async def test_an_oversized_head_fails_without_naming_its_headers(
    raw: Any, client: HTTPClient
) -> None:
    async def fat_head(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        # h11 bounds a head still incomplete: one over the bound plus a whole read is
        return ok(b"ok", "X-Secret: " + "s3cr3t" * ((MAX_HEAD + READ_SIZE) // 6 + 1))

    server = await raw(fat_head)
    with pytest.raises(HTTPFailure) as err:
        await client.fetch("GET", server.url, limit=100)
    assert "head over" in str(err.value) and "s3cr3t" not in str(err.value)


async def test_a_request_cut_by_the_callers_timeout_hangs_up(raw: Any, client: HTTPClient) -> None:
    async def hang_first(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return HANG if conn == 0 else ok()

    server = await raw(hang_first)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.fetch("GET", server.url, limit=100)
    await asyncio.wait_for(server.gone.wait(), 5)  # the connection was closed, not pooled
    assert await client.fetch("GET", server.url, limit=100) == (200, b"ok")


async def test_what_a_request_says(raw: Any, client: HTTPClient) -> None:
    server = await raw(answer_ok)
    await client.fetch("POST", f"{server.url}/key/ab?x=1", body=b"{}", content_type="a/b", limit=9)
    await client.fetch("GET", f"{server.url}/key/ab", limit=9)
    post, get = (head.decode() for _, head, _ in server.requests)
    port = server.url.rsplit(":", 1)[1]
    assert post.startswith("POST /key/ab?x=1 HTTP/1.1\r\n")
    for line in (f"host: 127.0.0.1:{port}", "user-agent: stunmeshd", "content-type: a/b"):
        assert f"\r\n{line}\r\n" in post.lower()
    assert "\r\ncontent-length: 2\r\n" in post.lower()
    assert get.startswith("GET /key/ab HTTP/1.1\r\n") and "content-type" not in get.lower()


async def test_an_ipv6_literal_url(client: HTTPClient) -> None:
    server = await RawServer(answer_ok).start("::1")
    try:
        assert await client.fetch("GET", f"{server.url}/x", limit=100) == (200, b"answer 0.0")
    finally:
        await server.close()
    port = server.url.rsplit(":", 1)[1]
    assert f"\r\nhost: [::1]:{port}\r\n" in server.requests[0][1].decode().lower()


# -- redirects (as aiohttp and Go's net/http follow them) -----------------------------------


@pytest.mark.parametrize(
    ("status", "method", "then"),
    [
        (301, "GET", "GET"),
        (302, "GET", "GET"),
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (307, "POST", "POST"),
        (308, "POST", "POST"),
    ],
)
async def test_redirects_are_followed(
    raw: Any, client: HTTPClient, status: int, method: str, then: str
) -> None:
    async def moved(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"%s /old " % method.encode()):
            return b"HTTP/1.1 %d Moved\r\nLocation: /new\r\nContent-Length: 3\r\n\r\nbye" % status
        return ok(b"new got %d bytes" % len(body))

    server = await raw(moved)
    body = b"{}" if method == "POST" else None
    answer = await client.fetch(method, f"{server.url}/old", body=body, limit=100)
    sent = 2 if then == "POST" else 0
    assert answer == (200, b"new got %d bytes" % sent)
    assert server.requests[1][1].startswith(f"{then} /new ".encode())
    assert server.connections == 1  # the redirect's body was read, its connection reused


async def test_a_redirect_loop_ends(raw: Any, client: HTTPClient) -> None:
    async def loop(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"

    server = await raw(loop)
    with pytest.raises(HTTPFailure, match="too many redirects"):
        await client.fetch("GET", server.url, limit=100)
    assert len(server.requests) == MAX_REDIRECTS


@pytest.mark.parametrize(
    ("location", "failure"),
    [
        (b"ftp://example.org/", "not http"),
        (b"/a b", "not a valid request target"),  # a target HTTP cannot carry
        (b"http://" + b"a" * 64 + b".example/", "cannot connect"),  # a DNS label is <= 63 bytes
    ],
)
async def test_a_redirect_somewhere_unreachable_fails_as_httpfailure(
    raw: Any, client: HTTPClient, location: bytes, failure: str
) -> None:
    async def redirect(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % location

    server = await raw(redirect)
    with pytest.raises(HTTPFailure, match=failure):
        await client.fetch("GET", server.url, limit=100)


async def test_a_url_with_a_target_http_cannot_carry_fails(raw: Any, client: HTTPClient) -> None:
    server = await raw(answer_ok)
    with pytest.raises(HTTPFailure, match="not a valid request target"):
        await client.fetch("GET", f"{server.url}/a b", limit=100)


async def test_a_redirect_without_location_is_the_answer(raw: Any, client: HTTPClient) -> None:
    async def no_location(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        return b"HTTP/1.1 302 Found\r\nContent-Length: 4\r\n\r\nhere"

    server = await raw(no_location)
    assert await client.fetch("GET", server.url, limit=100) == (302, b"here")


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` only (not its address)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, list[str | None]]]:
    """An https server (its port, the SNI names it was asked for) whose certificate the
    default context trusts: the client's ``ssl.create_default_context()`` reads
    SSL_CERT_FILE."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = sni  # type: ignore[assignment]
    stored: list[bytes] = []

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"over tls " + await request.read())

    async def proxy(request: web.Request) -> web.Response:
        """A DHT proxy's /key/ route: POST adds a value, GET lists them."""
        if request.method == "POST":
            stored.append(await request.read())
            return web.Response(body=b"{}")
        return web.Response(body=b"\n".join(stored))

    runner = web.AppRunner(app_of({"/": hello, "/key/{key}": proxy}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], names  # type: ignore[union-attr]
    await runner.cleanup()


async def test_https_checks_the_name_and_sends_it(
    tls_server: tuple[int, list[str | None]],
    client: HTTPClient,
    raw: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, names = tls_server
    made: list[ssl.SSLContext] = []
    default_context = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(default_context(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    await client.fetch("GET", (await raw(answer_ok)).url, limit=100)
    assert made == []  # plain http loads no CA certificates
    url = f"https://localhost:{port}/"
    assert await client.fetch("POST", url, body=b"a", limit=100) == (200, b"over tls a")
    assert await client.fetch("GET", url, limit=100) == (200, b"over tls ")
    assert names == ["localhost"]  # SNI, once: the second request reused the connection
    with pytest.raises(HTTPFailure, match=r"cannot connect.*(?i:certificate)"):
        await client.fetch("GET", f"https://127.0.0.1:{port}/", limit=100)  # not its name
    assert len(made) == 1  # one context for every https connection


async def test_https_refuses_a_certificate_nobody_vouches_for(
    tls_server: tuple[int, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE")
    client = HTTPClient(user_agent="stunmeshd")
    try:
        with pytest.raises(HTTPFailure, match=r"(?i)certificate verify failed"):
            await client.fetch("GET", f"https://localhost:{port}/", limit=100)
    finally:
        await client.close()


async def test_an_http_proxy_redirecting_to_https_keeps_working(
    tls_server: tuple[int, list[str | None]], raw: Any
) -> None:
    """A stunmesh-go config naming an http:// proxy that moved to https:// (Go follows)."""
    port, _ = tls_server

    async def to_https(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        path = head.split(b" ")[1]
        where = b"https://localhost:%d%s" % (port, path)
        return b"HTTP/1.1 308 Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % where

    server = await raw(to_https)
    store = OpenDHTStore("dht", endpoints=[server.url], clock=lambda: 1_700_000_000)
    try:
        await store.set("ab" * 20, "00ff")  # a POST stays a POST through a 308, body and all
        assert await store.get_all("ab" * 20) == [(1_700_000_000, "00ff")]
    finally:
        await store.close()


# -- streams ----------------------------------------------------------------------------------


async def endless(request: web.Request) -> web.StreamResponse:
    """A listen stream: one line, then silence."""
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"first\n")
    await asyncio.Event().wait()
    return resp


async def test_close_wakes_a_reader_parked_on_a_stream(client: HTTPClient) -> None:
    async with serve_app({"/": endless}) as url:
        stream = await client.stream(url)
        assert await stream.read_chunk() == b"first\n"
        parked = asyncio.ensure_future(stream.read_chunk())
        await asyncio.sleep(0.05)
        assert not parked.done()
        await client.close("the store was closed")
        with pytest.raises(HTTPFailure, match="the store was closed"):
            await asyncio.wait_for(parked, 5)


async def test_a_stream_cut_mid_answer_says_so(client: HTTPClient) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"first\n")
        assert request.transport is not None
        request.transport.close()  # a proxy that died mid-stream
        return resp

    async with serve_app({"/": broken}) as url:
        stream = await client.stream(url)
        assert await stream.read_chunk() == b"first\n"
        with pytest.raises(HTTPFailure, match="closed the connection mid-answer"):
            await stream.read_chunk()
        client.forget(stream)


async def test_a_watch_stream_gets_tcp_keepalive(client: HTTPClient, raw: Any) -> None:
    server = await raw(answer_ok)
    stream = await client.stream(server.url)
    _enable_keepalive(stream)
    sock = stream.socket
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE[0]
    client.forget(stream)


async def test_a_stream_follows_a_redirect_on_connections_of_its_own(
    raw: Any, client: HTTPClient
) -> None:
    async def moved(conn: int, index: int, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"GET /listen "):
            return b"HTTP/1.1 307 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nvalue\n\r\n0\r\n\r\n"

    server = await raw(moved)
    stream = await client.stream(f"{server.url}/listen")
    assert (stream.status, await stream.read(100)) == (200, b"value\n")
    client.forget(stream)
    assert [conn for conn, _, _ in server.requests] == [0, 1]


async def test_a_stream_never_takes_a_pooled_connection(raw: Any, client: HTTPClient) -> None:
    server = await raw(answer_ok)
    await client.fetch("GET", server.url, limit=100)  # leaves an idle connection
    stream = await client.stream(server.url)
    assert await stream.read(100) == b"answer 1.0"
    client.forget(stream)
    await client.fetch("GET", server.url, limit=100)
    assert [conn for conn, _, _ in server.requests] == [0, 1, 0]


# -- helpers ----------------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def app_of(routes: dict[str, Handler]) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    return app


class serve_app:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self.runner = web.AppRunner(app_of(routes), shutdown_timeout=0.1)

    async def __aenter__(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def _hashed_ca_directory(where: Path, cert: Path) -> Path:
    """A CA directory as update-ca-certificates keeps it: ``<subject hash>.0`` names."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(cert)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    where.mkdir()
    (where / f"{subject_hash}.0").write_bytes(cert.read_bytes())
    return where


async def test_a_hashed_ca_directory_is_read_only_for_the_root_a_server_names(
    tls_server: tuple[int, list[str | None]],
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole CA bundle costs ~1.2 MB of RSS; from a hashed directory OpenSSL loads the
    one root a server's chain names, when it names it."""
    port, _ = tls_server
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_DIR", str(_hashed_ca_directory(tmp_path / "ca", certificate[0])))
    context = tls_context()
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing read yet
    client = HTTPClient(user_agent="stunmeshd")
    client._tls = context
    try:
        assert await client.fetch("GET", f"https://localhost:{port}/", limit=100) == (
            200,
            b"over tls ",
        )
    finally:
        await client.close()
    assert context.cert_store_stats()["x509_ca"] == 1  # the server's root, looked up


def test_a_ca_directory_without_hash_links_falls_back_to_the_bundle(
    certificate: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribution whose CA directory holds only bundles (no c_rehash links) would
    verify nothing from it: the default context, bundle and all, is used instead."""
    plain = tmp_path / "certs"
    plain.mkdir()
    (plain / "ca-bundle.crt").write_bytes(certificate[0].read_bytes())
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(plain))
    made: list[dict[str, Any]] = []
    default_context = ssl.create_default_context

    def recorded(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs)
        return default_context(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", recorded)
    tls_context()
    assert made == [{}]  # no capath: the bundle file, as ssl's default
    hashed = _hashed_ca_directory(tmp_path / "hashed", certificate[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed))
    tls_context()
    assert made[-1] == {"capath": str(hashed)}
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_context()
    assert made[-1] == {}  # an explicit CA file keeps its meaning
