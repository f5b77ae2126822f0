"""STUN Binding transactions over any datagram transport (RFC 8489 §6.2.1).

The client owns what makes an answer trustworthy and discovery quick: retransmission timing,
matching each answer to its transaction id *and* the server's address and port, server
resolution and ordered fallback. How datagrams move (a raw socket sharing WireGuard's port,
or an in-memory fake in tests) is the transport's business.

Fallback strategy (happy-eyeballs style): servers are tried in configured order, but a
server silent for ``stagger`` seconds (default: one RTO) does not hold discovery up — the
next server is started while the silent one keeps being retried and may still answer. A
server that fails outright (error response, unusable answer, send error) releases the next
one at once. The first valid answer wins; answers that arrive together are ranked by
configured order. A later server's answer is *not* held back waiting for an earlier silent
one: a server that let a whole RTO (far above any sane round trip) pass is presumed lost, and
waiting for it would cost the time staggering exists to save. ``stagger=math.inf`` gives
strictly sequential fallback (the next server only after the previous one failed).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stunmeshd.endpoint_policy import refusal
from stunmeshd.errors import StunError
from stunmeshd.stun.codec import (
    MessageClass,
    StunMessage,
    StunParseError,
    decode_binding_response,
    encode_binding_request,
    parse_message,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]

DEFAULT_PORT = 3478
DEFAULT_RTO = 0.5
DEFAULT_MAX_TRANSMISSIONS = 7  # RFC 8489 Rc
FINAL_WAIT_FACTOR = 16  # RFC 8489 Rm: wait Rm × RTO after the last transmission


class DatagramTransport(Protocol):
    """What the client needs from the network: send to, and receive from, (ip, port)."""

    async def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram; OSError on failure."""
        ...

    async def recv(self) -> tuple[bytes, Address]:
        """The next datagram and its source (ip, port); OSError on failure."""
        ...


@dataclass(frozen=True, slots=True)
class BindingResult:
    """A discovered mapping. ``rtt`` runs from the first transmission to the answer."""

    mapped: Address
    server: Address
    other_address: Address | None
    response_origin: Address | None
    rtt: float


@dataclass(slots=True)
class ClientStats:
    """What the client saw; ignored datagrams are counted so tests and logs can tell why."""

    sent: int = 0  # transmissions, retransmissions included
    received: int = 0  # datagrams read from the transport
    accepted: int = 0  # responses that completed a transaction (success or error)
    malformed: int = 0  # not a well-formed STUN message
    not_response: int = 0  # well-formed, but a request or indication
    unmatched: int = 0  # transaction id not pending
    duplicate: int = 0  # transaction id already answered (a retransmission's answer)
    wrong_source: int = 0  # pending transaction id, but not from that server's ip:port


class StunTransactionError(StunError):
    """One transaction with one server failed; ``reason`` says how (no server in it)."""

    def __init__(self, server: tuple[str, int], reason: str) -> None:
        self.server = server
        self.reason = reason
        super().__init__(f"{format_address(server)}: {reason}")


# --------------------------------------------------------------------------- addresses


def format_address(addr: Address) -> str:
    """``ip:port`` or ``[v6]:port``."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=512)
def _normalize(addr: Address) -> Address:
    """Canonical text form of an address, so '::0:1' and '::1' compare equal."""
    host = addr[0].split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise StunError(f"not an IP address: {addr[0]!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(addr[1])


def parse_server(spec: str) -> tuple[str, int]:
    """Split ``host[:port]``, ``[v6]:port``, ``[v6]`` or a bare IPv6 literal; default port 3478."""
    if not isinstance(spec, str):
        raise StunError(f"a STUN server must be a 'host[:port]' string, not {spec!r}")
    text = spec.strip()
    if not text:
        raise StunError("empty STUN server name")
    port_text: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise StunError(f"{spec!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise StunError(f"{spec!r}: unexpected text after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a name, an IPv4 literal, or a bare IPv6 literal
    if not host:
        raise StunError(f"{spec!r}: empty host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 0xFFFF:
        raise StunError(f"{spec!r}: bad port {port_text!r}")
    return host, int(port_text)


def _family_name(family: int) -> str:
    return {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}.get(family, "the requested family")


@functools.lru_cache(maxsize=256)
def _literal(spec: str) -> tuple[Address, int] | None:
    """``((ip, port), version)`` of an IP-literal spec, None for a name (cached: hot path)."""
    host, port = parse_server(spec)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (str(ip), port), ip.version


def _resolve_literal(spec: str, family: int) -> list[Address] | None:
    """Addresses of an IP-literal spec without touching the resolver; None for a name."""
    if not isinstance(spec, str):
        parse_server(spec)  # raises the StunError that says what is wrong
    literal = _literal(spec)
    if literal is None:
        return None
    address, version = literal
    wanted = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)
    if wanted is not None and version != wanted:
        raise StunError(f"{spec}: not an {_family_name(family)} address")
    return [address]


async def _resolve_one(spec: str, family: int) -> list[Address]:
    literal = _resolve_literal(spec, family)
    if literal is not None:
        return literal
    host, port = parse_server(spec)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, family=family, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StunError(f"{spec}: cannot resolve: {reason}") from None
    found: list[Address] = []
    for fam, _type, _proto, _canon, sockaddr in infos:
        if family != socket.AF_UNSPEC and fam != family:
            continue
        addr = _normalize((str(sockaddr[0]), int(sockaddr[1])))
        if addr not in found:
            found.append(addr)
    if not found:
        raise StunError(f"{spec}: no {_family_name(family)} address")
    return found


async def resolve_servers(servers: Sequence[str], family: int) -> list[tuple[str, int]]:
    """Resolve ``host[:port]`` names concurrently, keeping configured order, without duplicates.

    Names that fail are left out (logged at debug); StunError naming each failure when none
    resolves.
    """
    outcomes = await asyncio.gather(
        *(_resolve_one(spec, family) for spec in servers), return_exceptions=True
    )
    found: list[Address] = []
    problems: list[str] = []
    for spec, outcome in zip(servers, outcomes, strict=True):
        if isinstance(outcome, StunError):
            log.debug("stun resolve failed server=%s reason=%s", spec, outcome)
            problems.append(str(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            found.extend(a for a in outcome if a not in found)
    if not found:
        raise StunError("no STUN server resolved: " + ("; ".join(problems) or "none configured"))
    return found


# --------------------------------------------------------------------------- client


class StunClient:
    """Binding transactions and discovery over one transport.

    ``rto`` is the initial retransmission timeout (doubling), ``max_transmissions`` the
    number of requests per transaction (RFC 8489 Rc), ``final_wait`` how long to wait after
    the last one (default Rm × rto = 16 × rto); with the defaults a dead server is given up
    after 39.5 s, as the RFC says. ``stagger`` (default: ``rto``; ``math.inf`` = sequential)
    — see the module docstring. ``family`` filters name resolution in :meth:`discover`
    (default: the transport's ``family`` attribute if it has one, else AF_INET).
    """

    def __init__(
        self,
        transport: DatagramTransport,
        *,
        rto: float = DEFAULT_RTO,
        max_transmissions: int = DEFAULT_MAX_TRANSMISSIONS,
        final_wait: float | None = None,
        stagger: float | None = None,
        family: int | None = None,
        fingerprint: bool = True,
    ) -> None:
        if not rto > 0:
            raise ValueError(f"rto must be positive, not {rto}")
        if max_transmissions < 1:
            raise ValueError(f"max_transmissions must be at least 1, not {max_transmissions}")
        if final_wait is not None and not final_wait > 0:
            raise ValueError(f"final_wait must be positive, not {final_wait}")
        if stagger is not None and not stagger >= 0:
            raise ValueError(f"stagger must be >= 0, not {stagger}")
        self.transport = transport
        self.rto = rto
        self.max_transmissions = max_transmissions
        self.final_wait = FINAL_WAIT_FACTOR * rto if final_wait is None else final_wait
        self.stagger = rto if stagger is None else stagger
        self.family: int = (
            family if family is not None else getattr(transport, "family", socket.AF_INET)
        )
        self.fingerprint = fingerprint
        self.stats = ClientStats()
        self._pending: dict[bytes, _Transaction] = {}
        self._answered: collections.deque[bytes] = collections.deque(maxlen=64)
        self._receiver: asyncio.Task[None] | None = None

    async def binding(self, server: tuple[str, int], *, change: int = 0) -> BindingResult:
        """One Binding transaction with ``server`` (an IP address and port).

        Raises StunTransactionError (a StunError) on timeout, error response, unusable
        response or send failure; ignores answers from elsewhere or for other transactions.
        With ``change`` (codec.CHANGE_IP / CHANGE_PORT, RFC 5780 filtering tests) the answer
        is expected from the server's *other* address or port, so any source is accepted (the
        96-bit transaction id still has to match); ``response_origin`` says where it came from.
        """
        try:
            host, port = server
            valid_port = isinstance(port, int) and 0 < port <= 0xFFFF
        except (TypeError, ValueError):
            valid_port = False
        if not valid_port:
            raise StunError(f"a STUN server must be an (ip, port) pair, not {server!r}")
        transaction = _Transaction(self, _normalize((str(host), port)), change=change)
        try:
            await transaction.start()
            outcome = await transaction.waiter
        finally:
            transaction.close()
        if isinstance(outcome, StunError):
            raise outcome
        return outcome

    async def discover(self, servers: Sequence[str]) -> BindingResult:
        """Resolve ``host[:port]`` servers and run staggered, ordered fallback over them.

        Raises StunError naming each server's failure when none gives a usable answer.
        """
        if not servers:
            raise StunError("no STUN servers configured")
        return await _Discovery(self, list(servers)).run()

    # -- receiving

    def _ensure_receiver(self) -> None:
        if self._receiver is None:
            self._receiver = asyncio.create_task(self._receive_loop(), name="stun-receive")

    def _release_receiver(self) -> None:
        """Stop reading when no transaction waits, so a closed transport is never read."""
        if self._pending or self._receiver is None:
            return
        receiver, self._receiver = self._receiver, None
        if receiver is not asyncio.current_task():
            receiver.cancel()  # suspended in recv(): nothing is consumed by cancelling
        # else it is dispatching the answer right now, and returns when that is done

    async def _receive_loop(self) -> None:
        me = asyncio.current_task()
        try:
            while True:
                data, source = await self.transport.recv()
                self._dispatch(data, source)
                if self._receiver is not me:
                    return  # released while dispatching: do not start another read
        except Exception as exc:  # the transport broke: fail the waiting transactions now
            if self._receiver is not me:
                return
            self._receiver = None
            reason = f"receive failed: {getattr(exc, 'strerror', None) or exc}"
            log.debug("stun receive failed detail=%r", exc)
            for transaction in list(self._pending.values()):
                transaction.finish(StunTransactionError(transaction.server, reason))

    def _dispatch(self, data: bytes, source: Address) -> None:
        """Route one datagram to its transaction, or count why it was ignored."""
        self.stats.received += 1
        try:
            message = parse_message(data)
        except StunParseError as exc:
            self.stats.malformed += 1
            log.debug(
                "stun ignored reason=malformed from=%s detail=%s", format_address(source), exc
            )
            return
        if message.cls not in (MessageClass.SUCCESS, MessageClass.ERROR):
            self.stats.not_response += 1
            log.debug("stun ignored reason=not-a-response from=%s", format_address(source))
            return
        transaction = self._pending.get(message.transaction_id)
        if transaction is None:
            if message.transaction_id in self._answered:
                self.stats.duplicate += 1
                log.debug("stun ignored reason=duplicate from=%s", format_address(source))
            else:
                self.stats.unmatched += 1
                log.debug("stun ignored reason=unknown-transaction from=%s", format_address(source))
            return
        try:
            src = _normalize((source[0], source[1]))
        except StunError:
            src = source
        if src != transaction.server and not transaction.change:
            self.stats.wrong_source += 1
            log.debug(
                "stun ignored reason=wrong-source from=%s expected=%s",
                format_address(src),
                format_address(transaction.server),
            )
            return
        self.stats.accepted += 1
        transaction.finish(transaction.judge(message))


class _Transaction:
    """One Binding transaction as a small state machine: timers, no task of its own.

    The first request is sent by the awaiting coroutine itself and the answer completes the
    transaction straight from the receiver — no extra task or loop turn on the fast path.
    """

    def __init__(
        self,
        client: StunClient,
        server: Address,
        on_done: Callable[[_Transaction], None] | None = None,
        *,
        change: int = 0,
    ) -> None:
        self.client = client
        self.server = server
        self.on_done = on_done
        self.change = change
        self.loop = asyncio.get_running_loop()
        self.tid, self.request = encode_binding_request(
            fingerprint=client.fingerprint, change=change
        )
        self.waiter: asyncio.Future[BindingResult | StunError] = self.loop.create_future()
        self.sent = 0
        self.first_sent = 0.0
        self.interval = client.rto
        self.timer: asyncio.TimerHandle | None = None
        self.resend: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client._pending[self.tid] = self
        await self._send()
        if not self.waiter.done():
            self.client._ensure_receiver()

    async def _send(self) -> None:
        try:
            await self.client.transport.send(self.request, self.server)
        except OSError as exc:
            self.finish(StunTransactionError(self.server, f"send failed: {exc.strerror or exc}"))
            return
        if self.waiter.done():
            return
        self.sent += 1
        self.client.stats.sent += 1
        if self.sent == 1:
            self.first_sent = self.loop.time()
        last = self.sent >= self.client.max_transmissions
        wait = self.client.final_wait if last else self.interval
        self.timer = self.loop.call_later(wait, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if self.waiter.done():
            return
        if self.sent >= self.client.max_transmissions:
            waited = self.loop.time() - self.first_sent
            reason = f"no answer to {self.sent} requests in {waited:.1f} s"
            self.finish(StunTransactionError(self.server, reason))
            return
        self.interval *= 2
        self.resend = asyncio.create_task(self._send(), name="stun-retransmit")

    def judge(self, message: StunMessage) -> BindingResult | StunError:
        """Turn the matched response into a usable mapping, or the reason it is not one."""
        rtt = max(0.0, self.loop.time() - self.first_sent)
        try:
            response = decode_binding_response(message)
        except StunParseError as exc:
            return StunTransactionError(self.server, f"unusable response: {exc}")
        if not response.success:
            reason = f" {response.error_reason}" if response.error_reason else ""
            return StunTransactionError(
                self.server, f"error response {response.error_code}{reason}"
            )
        assert response.mapped is not None
        refused = _mapping_refusal(response.mapped, self.server[0])
        if refused is not None:
            mapped = format_address(response.mapped)
            return StunTransactionError(self.server, f"unusable mapped address {mapped}: {refused}")
        return BindingResult(
            response.mapped, self.server, response.other_address, response.response_origin, rtt
        )

    def finish(self, outcome: BindingResult | StunError) -> None:
        """Complete once (errors travel as values: nothing is left "never retrieved")."""
        if self.waiter.done():
            return
        self.waiter.set_result(outcome)
        self.close()
        if self.on_done is not None:
            self.on_done(self)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.resend is not None and not self.resend.done():
            if self.resend is not asyncio.current_task():
                self.resend.cancel()
        if not self.waiter.done():
            self.waiter.cancel()
        if self.client._pending.pop(self.tid, None) is not None:
            self.client._answered.append(self.tid)
            self.client._release_receiver()


@functools.lru_cache(maxsize=512)
def _mapping_refusal(mapped: Address, server_host: str) -> str | None:
    """Why a mapped address cannot be our public endpoint (None: it can).

    It must be of the server's family and pass the endpoint policy every record passes too.
    """
    ip = ipaddress.ip_address(mapped[0])
    if ip.version != ipaddress.ip_address(server_host).version:
        return f"not an IPv{ipaddress.ip_address(server_host).version} address like the server's"
    return refusal(ip, mapped[1])


class _Discovery:
    """One discover() run: resolution, staggered launches, choosing the answer.

    Event-driven in the caller's coroutine: a wake-up future is resolved by transaction
    completions, resolutions and the stagger timer; the loop then launches what is allowed
    and looks for an answer.
    """

    def __init__(self, client: StunClient, specs: list[str]) -> None:
        self.client = client
        self.specs = specs
        self.loop = asyncio.get_running_loop()
        self.resolutions = [self._start_resolution(spec) for spec in specs]
        self.spec_pos = 0  # next spec whose addresses are to be queued
        self.queued: collections.deque[tuple[int, int, Address]] = collections.deque()
        self.attempts: list[tuple[int, int, _Transaction]] = []
        self.accounted: set[int] = set()  # attempts whose failure is in self.failures
        self.failures: list[tuple[int, int, str]] = []  # (spec index, address index, message)
        self.may_launch = True
        self.timer: asyncio.TimerHandle | None = None
        self.wake: asyncio.Future[None] | None = None
        self.hooked: set[asyncio.Future[list[Address]]] = set()  # resolutions that wake us

    def _signal(self, _: object = None) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _release(self) -> None:
        """Allow the next launch (stagger elapsed, or an attempt failed)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.may_launch = True
        self._signal()

    def _attempt_done(self, transaction: _Transaction) -> None:
        if isinstance(transaction.waiter.result(), StunError):
            self._release()
        self._signal()

    def _start_resolution(self, spec: str) -> asyncio.Future[list[Address]] | list[Address]:
        """IP literals resolve on the spot (no task, no resolver); names resolve concurrently."""
        try:
            literal = _resolve_literal(spec, self.client.family)
        except StunError as exc:
            failed: asyncio.Future[list[Address]] = self.loop.create_future()
            failed.set_exception(exc)
            return failed
        if literal is not None:
            return literal
        return asyncio.ensure_future(_resolve_one(spec, self.client.family))

    async def run(self) -> BindingResult:
        try:
            while True:
                await self._launch()
                result = self._check()
                if result is not None:
                    return result
                self.wake = self.loop.create_future()
                await self.wake
        finally:
            if self.timer is not None:
                self.timer.cancel()
            for _, _, transaction in self.attempts:
                transaction.close()
            for resolution in self.resolutions:
                if isinstance(resolution, asyncio.Future):
                    if not resolution.done():
                        resolution.cancel()
                    elif not resolution.cancelled():
                        resolution.exception()  # retrieved: no "never retrieved" warning

    def _next_candidate(self) -> tuple[int, int, Address] | None:
        """The next server address in configured order; None while waiting or when done."""
        while not self.queued and self.spec_pos < len(self.specs):
            resolution = self.resolutions[self.spec_pos]
            if isinstance(resolution, asyncio.Future):
                if not resolution.done():
                    if resolution not in self.hooked:
                        self.hooked.add(resolution)
                        resolution.add_done_callback(self._signal)
                    return None
                exc = resolution.exception()
                if exc is not None:
                    if not isinstance(exc, StunError):
                        raise exc
                    self.failures.append((self.spec_pos, 0, str(exc)))
                    self.spec_pos += 1
                    continue
                addresses = resolution.result()
            else:
                addresses = resolution
            self.queued.extend((self.spec_pos, i, addr) for i, addr in enumerate(addresses))
            self.spec_pos += 1
        return self.queued.popleft() if self.queued else None

    async def _launch(self) -> None:
        while self.may_launch:
            candidate = self._next_candidate()
            if candidate is None:
                return
            spec_index, addr_index, addr = candidate
            transaction = _Transaction(self.client, addr, self._attempt_done)
            self.attempts.append((spec_index, addr_index, transaction))
            self.may_launch = False
            if not math.isinf(self.client.stagger):
                self.timer = self.loop.call_later(self.client.stagger, self._release)
            await transaction.start()

    def _check(self) -> BindingResult | None:
        """The earliest-configured answer among finished attempts; raise when all failed."""
        all_done = True
        for index, (spec_index, addr_index, transaction) in enumerate(self.attempts):
            if not transaction.waiter.done():
                all_done = False
                continue
            outcome = transaction.waiter.result()
            if isinstance(outcome, BindingResult):
                return outcome
            if index not in self.accounted:
                self.accounted.add(index)
                text = self._failure_text(spec_index, outcome)
                self.failures.append((spec_index, addr_index, text))
                log.debug("stun server failed: %s", text)
        exhausted = not self.queued and self.spec_pos >= len(self.specs)
        if exhausted and all_done:
            self.failures.sort(key=lambda f: (f[0], f[1]))
            raise StunError("no STUN server answered: " + "; ".join(m for _, _, m in self.failures))
        return None

    def _failure_text(self, spec_index: int, error: StunError) -> str:
        """Name the server as configured; add the address when the name was resolved."""
        spec = self.specs[spec_index]
        if not isinstance(error, StunTransactionError):
            return f"{spec}: {error}"
        if not isinstance(self.resolutions[spec_index], asyncio.Future):
            return f"{spec}: {error.reason}"
        return f"{spec} ({format_address(error.server)}): {error.reason}"
