"""The wireguard-go UAPI backend: reply parsing, request bytes, and a fake UAPI server.

The fake server is a real asyncio unix socket in tmp_path speaking the protocol the way
wireguard-go 0.0.20220316 does (replies recorded from it in the lab); the backend under test
is the production code with only ``socket_dir`` pointed at tmp_path.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from stunmeshd.crypto import public_key as crypto_public_key
from stunmeshd.errors import DeviceNotFound, WireGuardError
from stunmeshd.wireguard import NetlinkBackend, UapiBackend, backend_for
from stunmeshd.wireguard.base import PeerInfo
from stunmeshd.wireguard.uapi import (
    build_reset_peer_request,
    build_set_endpoint_request,
    parse_get_reply,
    redact,
)

# RFC 7748 section 6.1 (X25519): Alice's private key and the public key it derives.
PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
PSK = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
PEER_V4 = bytes(range(1, 33))
PEER_V6 = bytes(range(33, 65))
PEER_NONE = bytes(range(65, 97))

# A get=1 reply as wireguard-go writes it, plus a key it does not know (yet).
GET_REPLY = f"""private_key={PRIVATE.hex()}
listen_port=51820
fwmark=66
public_key={PEER_V4.hex()}
preshared_key={PSK.hex()}
protocol_version=1
endpoint=203.0.113.20:40000
last_handshake_time_sec=1700000000
last_handshake_time_nsec=250000000
tx_bytes=1184
rx_bytes=92
persistent_keepalive_interval=25
allowed_ip=198.19.0.2/32
public_key={PEER_V6.hex()}
preshared_key={"00" * 32}
protocol_version=1
endpoint=[2001:db8::7]:51821
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
allowed_ip=198.19.0.3/32
allowed_ip=2001:db8:1::/64
some_future_key=whatever
public_key={PEER_NONE.hex()}
preshared_key={"00" * 32}
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
errno=0

"""


# ---- parsing -------------------------------------------------------------------------------


def test_public_key_is_derived_as_x25519() -> None:
    assert crypto_public_key(PRIVATE) == PUBLIC


def test_get_reply_with_several_peers() -> None:
    info = parse_get_reply("wg0", GET_REPLY)
    assert info.name == "wg0"
    assert info.private_key == PRIVATE
    assert info.public_key == PUBLIC
    assert info.listen_port == 51820
    assert info.fwmark == 66
    assert list(info.peers) == [PEER_V4, PEER_V6, PEER_NONE]

    v4 = info.peers[PEER_V4]
    assert v4.public_key == PEER_V4
    assert v4.endpoint == "203.0.113.20:40000"
    assert v4.latest_handshake == pytest.approx(1700000000.25)
    assert (v4.tx_bytes, v4.rx_bytes, v4.persistent_keepalive) == (1184, 92, 25)

    v6 = info.peers[PEER_V6]
    assert v6.endpoint == "[2001:db8::7]:51821"
    assert v6.latest_handshake == 0.0
    assert (v6.tx_bytes, v6.rx_bytes, v6.persistent_keepalive) == (0, 0, 0)

    assert info.peers[PEER_NONE].endpoint is None


def test_device_without_peers_and_defaults() -> None:
    info = parse_get_reply("wg0", f"private_key={PRIVATE.hex()}\nerrno=0\n\n")
    assert (info.listen_port, info.fwmark, info.peers) == (0, 0, {})


def test_endpoint_is_normalised_to_rfc5952() -> None:
    reply = GET_REPLY.replace("[2001:db8::7]", "[2001:DB8:0:0:0:0:0:7]")
    assert parse_get_reply("wg0", reply).peers[PEER_V6].endpoint == "[2001:db8::7]:51821"


def test_nonzero_errno_is_an_error() -> None:
    with pytest.raises(WireGuardError, match=r"errno=-22"):
        parse_get_reply("wg0", "errno=-22\n\n")


def test_device_without_private_key_is_an_error() -> None:
    with pytest.raises(WireGuardError, match="no private key"):
        parse_get_reply("wg0", "listen_port=51820\nerrno=0\n\n")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("listen_port=51820", "listen_port=5182O"),
        ("listen_port=51820", "listen_port=70000"),
        ("fwmark=66", "fwmark=-1"),
        ("tx_bytes=1184", "tx_bytes=1e3"),
        ("rx_bytes=92", "rx_bytes="),
        ("last_handshake_time_sec=1700000000", "last_handshake_time_sec=soon"),
        ("last_handshake_time_nsec=250000000", "last_handshake_time_nsec=1000000000"),
        ("persistent_keepalive_interval=25", "persistent_keepalive_interval=99999"),
        ("endpoint=203.0.113.20:40000", "endpoint=203.0.113.20"),
        ("endpoint=203.0.113.20:40000", "endpoint=not-an-address:1"),
        (f"public_key={PEER_V4.hex()}", f"public_key={PEER_V4.hex()[:-2]}"),
        (f"public_key={PEER_V4.hex()}", "public_key=zz"),
        ("protocol_version=1", "garbage line without equals"),
        ("errno=0", "errno=zero"),
        ("errno=0", "no_errno=0"),
    ],
)
def test_malformed_reply_raises_wireguard_error(old: str, new: str) -> None:
    assert old in GET_REPLY
    with pytest.raises(WireGuardError):
        parse_get_reply("wg0", GET_REPLY.replace(old, new, 1))


def test_peer_attribute_before_any_peer_is_an_error() -> None:
    reply = f"private_key={PRIVATE.hex()}\nendpoint=203.0.113.1:1\nerrno=0\n\n"
    with pytest.raises(WireGuardError, match="before any public_key"):
        parse_get_reply("wg0", reply)


def test_malformed_private_key_is_not_echoed() -> None:
    secret = PRIVATE.hex()[:-1]  # 63 digits
    with pytest.raises(WireGuardError) as caught:
        parse_get_reply("wg0", f"private_key={secret}\nerrno=0\n\n")
    assert secret not in str(caught.value)
    assert "private_key" in str(caught.value)


def test_redact_hides_private_and_preshared_keys() -> None:
    text = redact(GET_REPLY)
    assert PRIVATE.hex() not in text
    assert PSK.hex() not in text
    assert "private_key=(redacted)" in text
    assert "preshared_key=(redacted)" in text
    assert f"public_key={PEER_V4.hex()}" in text  # public keys are not secrets


# ---- the set=1 request --------------------------------------------------------------------


def test_set_request_bytes() -> None:
    assert build_set_endpoint_request(PEER_V4, "203.0.113.20:40000") == (
        b"set=1\n"
        b"public_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
        b"update_only=true\n"
        b"endpoint=203.0.113.20:40000\n"
        b"\n"
    )


def test_set_request_bytes_with_keepalive_and_ipv6() -> None:
    request = build_set_endpoint_request(PEER_V6, "[2001:DB8:0::7]:51821", keepalive=25)
    assert (
        request
        == (
            f"set=1\npublic_key={PEER_V6.hex()}\nupdate_only=true\n"
            "endpoint=[2001:db8::7]:51821\npersistent_keepalive_interval=0\n"
            "persistent_keepalive_interval=25\n\n"
        ).encode()
    )


@pytest.mark.parametrize(
    ("key", "endpoint", "keepalive"),
    [
        (PEER_V4[:31], "203.0.113.20:40000", None),
        ("not bytes", "203.0.113.20:40000", None),
        (PEER_V4, "203.0.113.20:40000\nremove=true", None),
        (PEER_V4, "203.0.113.20", None),
        (PEER_V4, "203.0.113.20:0", None),
        (PEER_V4, "2001:db8::7:51820", None),
        (PEER_V4, "example.org:51820", None),
        (PEER_V4, "203.0.113.20:40000", -1),
        (PEER_V4, "203.0.113.20:40000", 65536),
        (PEER_V4, "203.0.113.20:40000", True),
    ],
)
def test_bad_set_input_raises_wireguard_error(
    key: bytes, endpoint: str, keepalive: int | None
) -> None:
    with pytest.raises(WireGuardError):
        build_set_endpoint_request(key, endpoint, keepalive=keepalive)


# ---- against a UAPI server on a unix socket -----------------------------------------------

Handler = Callable[[bytes], Awaitable[bytes | None]]


class FakeUapi:
    """A UAPI server on ``<dir>/<ifname>.sock`` that records each request."""

    def __init__(self, directory: Path, ifname: str = "wg0") -> None:
        self.path = directory / f"{ifname}.sock"
        self.requests: list[bytes] = []
        self.handler: Handler = self.reply_with(GET_REPLY.encode())
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    @staticmethod
    def reply_with(reply: bytes) -> Handler:
        async def handler(request: bytes) -> bytes:
            return reply

        return handler

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in self.sessions:  # e.g. a silent handler still waiting
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            request = await reader.readuntil(b"\n\n")
            self.requests.append(request)
            reply = await self.handler(request)
            if reply is not None:
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def uapi(tmp_path: Path) -> AsyncIterator[FakeUapi]:
    server = FakeUapi(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_read_device_over_the_socket(uapi: FakeUapi, tmp_path: Path) -> None:
    info = await UapiBackend(tmp_path).read_device("wg0")
    assert uapi.requests == [b"get=1\n\n"]
    assert info.public_key == PUBLIC
    assert info.peers[PEER_V4].endpoint == "203.0.113.20:40000"
    assert info.peers[PEER_NONE].endpoint is None


async def test_set_endpoint_over_the_socket(uapi: FakeUapi, tmp_path: Path) -> None:
    uapi.handler = uapi.reply_with(b"errno=0\n\n")
    await UapiBackend(tmp_path).set_endpoint("wg0", PEER_V6, "[2001:db8::9]:5", keepalive=25)
    assert uapi.requests == [
        f"set=1\npublic_key={PEER_V6.hex()}\nupdate_only=true\n"
        "endpoint=[2001:db8::9]:5\npersistent_keepalive_interval=0\n"
        "persistent_keepalive_interval=25\n\n".encode()
    ]


async def test_refused_set_raises_with_errno(uapi: FakeUapi, tmp_path: Path) -> None:
    uapi.handler = uapi.reply_with(b"errno=-22\n\n")
    with pytest.raises(WireGuardError, match=r"errno=-22 \(Invalid argument\)"):
        await UapiBackend(tmp_path).set_endpoint("wg0", PEER_V4, "203.0.113.20:40000")


async def test_silent_server_times_out(uapi: FakeUapi, tmp_path: Path) -> None:
    never = asyncio.Event()

    async def silent(request: bytes) -> bytes:
        await never.wait()
        return b""

    uapi.handler = silent
    with pytest.raises(WireGuardError, match="did not answer"):
        await UapiBackend(tmp_path, timeout=0.2).read_device("wg0")


@pytest.mark.parametrize(
    "reply",
    [b"", b"private_key=" + PRIVATE.hex().encode() + b"\nlisten_port=1\n", b"errno=0"],
    ids=["empty", "no-errno", "errno-without-newline"],
)
async def test_reply_cut_short_raises(uapi: FakeUapi, tmp_path: Path, reply: bytes) -> None:
    uapi.handler = uapi.reply_with(reply)
    with pytest.raises(WireGuardError, match="ended before errno"):
        await UapiBackend(tmp_path).read_device("wg0")


async def test_oversized_line_raises(uapi: FakeUapi, tmp_path: Path) -> None:
    uapi.handler = uapi.reply_with(b"x=" + b"1" * 200_000 + b"\nerrno=0\n\n")
    with pytest.raises(WireGuardError, match="oversized"):
        await UapiBackend(tmp_path).read_device("wg0")


async def test_missing_socket_is_device_not_found(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFound, match="wg9"):
        await UapiBackend(tmp_path).read_device("wg9")
    with pytest.raises(DeviceNotFound):
        await UapiBackend(tmp_path).set_endpoint("wg9", PEER_V4, "203.0.113.20:40000")


async def test_stale_socket_is_device_not_found(tmp_path: Path) -> None:
    # wireguard-go killed with SIGKILL leaves its socket file behind, with nobody listening
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wg0.sock"))
    stale.close()
    with pytest.raises(DeviceNotFound):
        await UapiBackend(tmp_path).read_device("wg0")


@pytest.mark.parametrize("name", ["", "../../etc/x", "wg 0", "a" * 16, "..", "wg/0"])
async def test_invalid_interface_name_is_device_not_found(tmp_path: Path, name: str) -> None:
    with pytest.raises(DeviceNotFound, match="invalid interface name"):
        await UapiBackend(tmp_path).read_device(name)


async def test_secrets_never_reach_the_log(
    uapi: FakeUapi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stunmeshd.wireguard")
    info = await UapiBackend(tmp_path).read_device("wg0")
    assert "private_key=(redacted)" in caplog.text  # the traffic was logged ...
    for secret in (PRIVATE.hex(), PSK.hex(), base64.b64encode(PRIVATE).decode()):
        assert secret not in caplog.text  # ... without the secrets
        assert secret not in repr(info)
    assert PRIVATE.hex() not in repr(UapiBackend(tmp_path))


# ---- backend selection --------------------------------------------------------------------


async def test_backend_for_picks_wireguard_go_when_its_socket_exists(
    uapi: FakeUapi, tmp_path: Path
) -> None:
    backend = backend_for("wg0", uapi_dir=tmp_path)
    assert isinstance(backend, UapiBackend)
    assert backend.kind == "wireguard-go"
    assert (await backend.read_device("wg0")).public_key == PUBLIC  # and it talks to that dir


def test_backend_for_falls_back_to_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "wg1.sock").write_text("a regular file is no UAPI socket")
    for name in ("wg0", "wg1", "../x"):
        backend = backend_for(name, uapi_dir=tmp_path)
        assert isinstance(backend, NetlinkBackend)
        assert backend.kind == "kernel"


def test_reset_request_removes_and_recreates_the_peer_with_its_config() -> None:
    peer = PeerInfo(
        public_key=PEER_V4,
        endpoint=None,
        latest_handshake=0.0,
        rx_bytes=0,
        tx_bytes=0,
        persistent_keepalive=0,
        allowed_ips=("198.19.0.2/32", "2001:db8::/64"),
        preshared_key=PSK,
    )
    request = build_reset_peer_request(peer, "[2001:DB8::7]:51821", 25)
    assert (
        request
        == (
            f"set=1\npublic_key={PEER_V4.hex()}\nremove=true\npublic_key={PEER_V4.hex()}\n"
            f"preshared_key={PSK.hex()}\nendpoint=[2001:db8::7]:51821\n"
            "persistent_keepalive_interval=0\npersistent_keepalive_interval=25\n"
            "replace_allowed_ips=true\nallowed_ip=198.19.0.2/32\nallowed_ip=2001:db8::/64\n\n"
        ).encode()
    )
    assert PSK.hex() not in redact(request.decode())


def test_reset_request_without_a_preshared_key_sets_none() -> None:
    peer = PeerInfo(
        public_key=PEER_V4,
        endpoint=None,
        latest_handshake=0.0,
        rx_bytes=0,
        tx_bytes=0,
        persistent_keepalive=0,
        allowed_ips=("198.19.0.2/32",),
        preshared_key=bytes(32),
    )
    assert b"preshared_key" not in build_reset_peer_request(peer, "203.0.113.20:1", 25)
