"""wireguard-go driven through its UAPI unix socket (``/run/wireguard/<ifname>.sock``).

The protocol is line-based text: a request is ``get=1`` or ``set=1`` followed by ``key=value``
lines and an empty line; the reply is ``key=value`` lines ending with ``errno=N`` and an empty
line. Keys are hex here, not base64. One connection per operation keeps the daemon free of
stale connections when wireguard-go restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from stunmeshd.endpoints import format_endpoint, normalize_endpoint, parse_endpoint
from stunmeshd.errors import DeviceNotFound, WireGuardError
from stunmeshd.wireguard.base import DeviceInfo, PeerInfo, device_info

if TYPE_CHECKING:
    from _typeshed import StrPath

log = logging.getLogger(__name__)

DEFAULT_SOCKET_DIR = "/run/wireguard"
DEFAULT_TIMEOUT = 5.0
MAX_REPLY_BYTES = 32 * 1024 * 1024  # ~100k peers; anything larger is not wireguard-go talking
KEY_LEN = 32

# Keys whose values are secrets: never logged, never put in an error message.
SECRET_KEYS = frozenset({"private_key", "preshared_key"})
_IFNAME_RE = re.compile(r"^[^/\s\x00]{1,15}$")  # IFNAMSIZ - 1, and it becomes a path component


def check_ifname(ifname: str) -> None:
    """Refuse names that cannot be interfaces (and must not become socket paths)."""
    if not isinstance(ifname, str) or not _IFNAME_RE.match(ifname) or ifname in (".", ".."):
        raise DeviceNotFound(f"invalid interface name {ifname!r}")


def redact(text: str) -> str:
    """UAPI traffic with every secret value replaced, for debug logs."""
    out = []
    for line in text.split("\n"):
        key, sep, _ = line.partition("=")
        out.append(f"{key}=(redacted)" if sep and key in SECRET_KEYS else line)
    return "\n".join(out)


def build_reset_peer_request(peer: PeerInfo, endpoint: str, keepalive: int) -> bytes:
    """``set=1`` removing ``peer`` and adding it again, same config, new endpoint, keepalive on.

    One transaction: wireguard-go applies it under its device lock. The new peer's first
    keepalive (0 -> N) makes it initiate a handshake at once.
    """
    head = build_set_endpoint_request(peer.public_key, endpoint, keepalive=keepalive)
    lines = head.decode().rstrip("\n").split("\n")
    canonical = [
        line for line in lines if line.startswith(("endpoint=", "persistent_keepalive_interval="))
    ]
    body = [
        "set=1",
        f"public_key={peer.public_key.hex()}",
        "remove=true",
        f"public_key={peer.public_key.hex()}",
    ]
    if peer.preshared_key and any(peer.preshared_key):
        body.append(f"preshared_key={peer.preshared_key.hex()}")
    body += canonical
    body.append("replace_allowed_ips=true")
    body += [f"allowed_ip={ip}" for ip in peer.allowed_ips]
    return ("\n".join(body) + "\n\n").encode()


def build_set_endpoint_request(
    public_key: bytes, endpoint: str, *, keepalive: int | None = None
) -> bytes:
    """The ``set=1`` request that points one existing peer at ``endpoint``.

    ``update_only=true`` right after ``public_key`` makes wireguard-go drop the request for an
    unknown peer instead of creating it. The endpoint is re-formatted from its parsed parts, so
    nothing a record carried can inject extra UAPI lines.
    """
    if not isinstance(public_key, bytes) or len(public_key) != KEY_LEN:
        raise WireGuardError("peer public key must be 32 bytes")
    try:
        host, port, _ = parse_endpoint(endpoint)
        canonical = format_endpoint(host, port)
    except (ValueError, TypeError, AttributeError):
        raise WireGuardError(f"malformed endpoint {endpoint!r}") from None
    lines = [
        "set=1",
        f"public_key={public_key.hex()}",
        "update_only=true",
        f"endpoint={canonical}",
    ]
    if keepalive is not None:
        if isinstance(keepalive, bool) or not isinstance(keepalive, int):
            raise WireGuardError(f"keepalive must be an integer, not {keepalive!r}")
        if not 0 <= keepalive <= 65535:
            raise WireGuardError(f"keepalive out of range (0-65535): {keepalive}")
        # 0 first: only a 0 -> N transition makes WireGuard send at once (a keepalive on a
        # live session, else a handshake initiation), whatever the interval was before
        lines.append("persistent_keepalive_interval=0")
        lines.append(f"persistent_keepalive_interval={keepalive}")
    return ("\n".join(lines) + "\n\n").encode()


def _int(key: str, value: str) -> int:
    """A non-negative decimal from wireguard-go; anything else means a corrupt reply."""
    if not value.isascii() or not value.isdigit():
        raise WireGuardError(f"malformed number in UAPI reply: {key}={value[:32]!r}")
    return int(value)


def _key(key: str, value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != KEY_LEN:
        # the value is never echoed: it may be a (corrupt) private key
        raise WireGuardError(f"malformed {key} in UAPI reply (want 64 hex digits)")
    return raw


class _Peer:
    """A peer being assembled from consecutive reply lines."""

    __slots__ = (
        "allowed",
        "endpoint",
        "hs_nsec",
        "hs_sec",
        "keepalive",
        "psk",
        "public_key",
        "rx",
        "tx",
    )

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.endpoint: str | None = None
        self.hs_sec = 0
        self.hs_nsec = 0
        self.rx = 0
        self.tx = 0
        self.keepalive = 0
        self.allowed: list[str] = []
        self.psk = b""

    def freeze(self) -> PeerInfo:
        return PeerInfo(
            public_key=self.public_key,
            endpoint=self.endpoint,
            latest_handshake=self.hs_sec + self.hs_nsec / 1e9,
            rx_bytes=self.rx,
            tx_bytes=self.tx,
            persistent_keepalive=self.keepalive,
            allowed_ips=tuple(self.allowed),
            preshared_key=self.psk,
        )


def parse_errno(lines: list[str]) -> int:
    """The ``errno=N`` that ends every reply; WireGuardError when there is none."""
    for line in reversed(lines):
        key, sep, value = line.partition("=")
        if sep and key == "errno":
            try:
                return int(value)
            except ValueError:
                raise WireGuardError(f"malformed errno in UAPI reply: {value[:32]!r}") from None
    raise WireGuardError("UAPI reply has no errno line")


def parse_get_reply(ifname: str, text: str) -> DeviceInfo:
    """Turn a ``get=1`` reply into a DeviceInfo.

    Unknown keys are ignored (newer wireguard-go may add some); malformed values raise
    WireGuardError; a non-zero errno raises WireGuardError naming the errno.
    """
    lines = [line for line in text.split("\n") if line]
    code = parse_errno(lines)
    if code != 0:
        raise WireGuardError(
            f"wireguard-go refused get on {ifname}: errno={code} ({_strerror(code)})"
        )
    private_key: bytes | None = None
    listen_port = 0
    fwmark = 0
    peers: dict[bytes, _Peer] = {}
    peer: _Peer | None = None
    for number, line in enumerate(lines, 1):
        key, sep, value = line.partition("=")
        if not sep:  # not echoed: a corrupt line could carry a key
            raise WireGuardError(f"malformed line {number} in UAPI reply (no '=')")
        if key == "errno":
            break
        if key == "private_key":
            private_key = _key(key, value)
        elif key == "listen_port":
            listen_port = _int(key, value)
            if listen_port > 65535:
                raise WireGuardError(f"listen_port out of range in UAPI reply: {listen_port}")
        elif key == "fwmark":
            fwmark = _int(key, value)
            if fwmark > 0xFFFFFFFF:
                raise WireGuardError(f"fwmark out of range in UAPI reply: {fwmark}")
        elif key == "public_key":
            peer = _Peer(_key(key, value))
            peers[peer.public_key] = peer
        elif key in _PEER_KEYS:
            if peer is None:
                raise WireGuardError(f"UAPI reply has {key} before any public_key")
            _PEER_KEYS[key](peer, key, value)
        # anything else (protocol_version, future keys): not needed
    frozen = {key: p.freeze() for key, p in peers.items()}
    return device_info(ifname, private_key, listen_port, fwmark, frozen)


def _set_endpoint(peer: _Peer, key: str, value: str) -> None:
    if not value:
        return
    try:
        peer.endpoint = normalize_endpoint(value)
    except (ValueError, TypeError):
        raise WireGuardError(f"malformed endpoint in UAPI reply: {value[:64]!r}") from None


def _set_nsec(peer: _Peer, key: str, value: str) -> None:
    peer.hs_nsec = _int(key, value)
    if peer.hs_nsec >= 1_000_000_000:
        raise WireGuardError(f"{key} out of range in UAPI reply: {peer.hs_nsec}")


def _set_keepalive(peer: _Peer, key: str, value: str) -> None:
    peer.keepalive = _int(key, value)
    if peer.keepalive > 65535:
        raise WireGuardError(f"{key} out of range in UAPI reply: {peer.keepalive}")


def _set_attr(name: str) -> Callable[[_Peer, str, str], None]:
    def setter(peer: _Peer, key: str, value: str) -> None:
        setattr(peer, name, _int(key, value))

    return setter


_PEER_KEYS: dict[str, Callable[[_Peer, str, str], None]] = {
    "endpoint": _set_endpoint,
    "last_handshake_time_sec": _set_attr("hs_sec"),
    "last_handshake_time_nsec": _set_nsec,
    "rx_bytes": _set_attr("rx"),
    "tx_bytes": _set_attr("tx"),
    "persistent_keepalive_interval": _set_keepalive,
    "allowed_ip": lambda peer, key, value: peer.allowed.append(_allowed_ip(value)),
    "preshared_key": lambda peer, key, value: setattr(peer, "psk", _key(key, value)),
}


def _allowed_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise WireGuardError(f"malformed allowed_ip in UAPI reply: {value[:64]!r}") from None


def _strerror(code: int) -> str:
    try:
        return os.strerror(abs(code))
    except (ValueError, OverflowError):
        return "unknown error"


class UapiBackend:
    """WireGuard devices run by wireguard-go (or any userspace implementation with UAPI)."""

    kind = "wireguard-go"

    def __init__(
        self, socket_dir: StrPath = DEFAULT_SOCKET_DIR, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.socket_dir = os.fspath(socket_dir)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"UapiBackend(socket_dir={self.socket_dir!r})"

    def socket_path(self, ifname: str) -> str:
        check_ifname(ifname)
        return os.path.join(self.socket_dir, f"{ifname}.sock")

    def has_device(self, ifname: str) -> bool:
        """True when wireguard-go's socket for ``ifname`` exists (a cheap stat, no I/O).

        Also True when the socket directory cannot be searched (it is root-only): the device
        may well be there, and this backend's error then says what permission is missing,
        where the kernel's would only say "not found".
        """
        try:
            return stat.S_ISSOCK(os.stat(self.socket_path(ifname)).st_mode)
        except PermissionError:
            return True
        except (DeviceNotFound, OSError, ValueError):
            return False

    async def read_device(self, ifname: str) -> DeviceInfo:
        reply = await self._transact(ifname, b"get=1\n\n")
        return parse_get_reply(ifname, reply)

    async def set_endpoint(
        self, ifname: str, public_key: bytes, endpoint: str, *, keepalive: int | None = None
    ) -> None:
        request = build_set_endpoint_request(public_key, endpoint, keepalive=keepalive)
        reply = await self._transact(ifname, request)
        code = parse_errno([line for line in reply.split("\n") if line])
        if code != 0:
            raise WireGuardError(
                f"wireguard-go refused to set the endpoint of a peer on {ifname}: "
                f"errno={code} ({_strerror(code)})"
            )

    async def reset_peer(self, ifname: str, peer: PeerInfo, endpoint: str, keepalive: int) -> None:
        request = build_reset_peer_request(peer, endpoint, keepalive)
        reply = await self._transact(ifname, request)
        code = parse_errno([line for line in reply.split("\n") if line])
        if code != 0:
            raise WireGuardError(
                f"wireguard-go refused to re-create a peer on {ifname}: "
                f"errno={code} ({_strerror(code)})"
            )

    async def _transact(self, ifname: str, request: bytes) -> str:
        """Send one request, return the reply text up to and including ``errno=N``."""
        path = self.socket_path(ifname)
        log.debug("uapi send iface=%s %s", ifname, _oneline(request.decode()))
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._exchange(path, request)
        except TimeoutError:
            raise WireGuardError(
                f"wireguard-go on {ifname} did not answer within {self.timeout:g}s"
            ) from None
        log.debug("uapi recv iface=%s %s", ifname, _oneline(reply))
        return reply

    async def _exchange(self, path: str, request: bytes) -> str:
        ifname = os.path.basename(path).removesuffix(".sock")
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            # no socket, or a stale one nobody listens on: the device is not there
            raise DeviceNotFound(f"no wireguard-go interface {ifname} (no {path})") from None
        except PermissionError:
            raise WireGuardError(
                f"permission denied opening {path}: wireguard-go's control socket is root-only, "
                "so stunmeshd must run as root (the kernel backend needs CAP_NET_ADMIN)"
            ) from None
        except OSError as exc:
            raise WireGuardError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            writer.write(request)
            await writer.drain()
            lines: list[str] = []
            size = 0
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:  # a line over the stream limit
                    raise WireGuardError(f"oversized line in UAPI reply from {ifname}") from None
                if not raw.endswith(b"\n"):
                    raise WireGuardError(f"UAPI reply from {ifname} ended before errno")
                size += len(raw)
                if size > MAX_REPLY_BYTES:
                    raise WireGuardError(f"UAPI reply from {ifname} is too large")
                line = raw[:-1].decode("utf-8", "replace")
                lines.append(line)
                if line.startswith("errno="):
                    return "\n".join(lines) + "\n"
        except (ConnectionError, BrokenPipeError) as exc:
            raise WireGuardError(f"wireguard-go on {ifname} closed the connection: {exc}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _oneline(text: str) -> str:
    return " ".join(line for line in redact(text).split("\n") if line)
