"""The STUN client over an in-memory network, on a virtual clock.

The loop below jumps its clock to the next timer whenever nothing is ready, so RFC 8489's
39.5 s retransmission schedule runs instantly and its timing is asserted exactly — in
virtual seconds, not wall-clock ones.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from stunmeshd.errors import StunError
from stunmeshd.stun.client import (
    BindingResult,
    StunClient,
    StunTransactionError,
    format_address,
    parse_server,
    resolve_servers,
)
from stunmeshd.stun.codec import (
    METHOD_BINDING,
    Attr,
    MessageClass,
    StunMessage,
    encode_address,
    encode_binding_error,
    encode_binding_response,
    encode_message,
    parse_message,
)

T = TypeVar("T")
Address = tuple[str, int]

S1 = ("198.51.100.1", 3478)
S2 = ("203.0.113.1", 3478)
MAPPED = ("198.51.100.10", 40000)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next live timer when nothing else can run."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        ready: Any = self._ready  # type: ignore[attr-defined]
        scheduled: Any = self._scheduled  # type: ignore[attr-defined]
        if not ready:
            live = [h.when() for h in scheduled if not h.cancelled()]
            if live:
                self._now = max(self._now, min(live))
        super()._run_once()  # type: ignore[misc]


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


# A server behaviour: given the request and how many this server got, what to send back:
# a list of (delay, datagram, source).
Reply = tuple[float, bytes, Address]
Behaviour = Callable[[StunMessage, int], list[Reply]]


def answer(mapped: Address = MAPPED, *, delay: float = 0.01, after: int = 1) -> Behaviour:
    """Answer from the server's own address, starting with request number ``after``."""

    def behave(request: StunMessage, count: int) -> list[Reply]:
        if count < after:
            return []
        return [(delay, encode_binding_response(request.transaction_id, mapped), SELF)]

    return behave


SELF = ("self", 0)  # placeholder: "the server's own address"


def silent() -> Behaviour:
    return lambda request, count: []


@dataclass
class FakeNetwork:
    """A DatagramTransport whose far side is a dict of scripted servers."""

    servers: dict[Address, Behaviour] = field(default_factory=dict)
    sent: list[tuple[float, Address, bytes]] = field(default_factory=list)
    send_error: dict[Address, OSError] = field(default_factory=dict)
    recv_error: OSError | None = None
    family: int = socket.AF_INET
    inbox: asyncio.Queue[tuple[bytes, Address]] = field(default_factory=asyncio.Queue)

    async def send(self, data: bytes, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        if addr in self.send_error:
            raise self.send_error[addr]
        self.sent.append((loop.time(), addr, data))
        behave = self.servers.get(addr)
        if behave is None:
            return
        count = sum(1 for _, a, _ in self.sent if a == addr)
        for delay, datagram, source in behave(parse_message(data), count):
            src = addr if source == SELF else source
            loop.call_later(delay, self.inbox.put_nowait, (datagram, src))

    async def recv(self) -> tuple[bytes, Address]:
        if self.recv_error is not None:
            raise self.recv_error
        return await self.inbox.get()

    def times(self, addr: Address) -> list[float]:
        return [round(t, 6) for t, a, _ in self.sent if a == addr]


def client_for(net: FakeNetwork, **kw: Any) -> StunClient:
    return StunClient(net, **kw)


# --------------------------------------------------------------------------- one transaction


def test_binding_returns_the_mapping_and_server_details() -> None:
    async def go() -> tuple[BindingResult, FakeNetwork]:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            data = encode_binding_response(
                request.transaction_id,
                MAPPED,
                other_address=("203.0.113.1", 3479),
                response_origin=S1,
                fingerprint=True,
            )
            return [(0.02, data, SELF)]

        net.servers[S1] = behave
        return await client_for(net).binding(S1), net

    result, net = run(go)
    assert result == BindingResult(MAPPED, S1, ("203.0.113.1", 3479), S1, pytest.approx(0.02))
    assert net.times(S1) == [0.0]
    request = parse_message(net.sent[0][2])
    assert request.method == METHOD_BINDING and request.cls is MessageClass.REQUEST
    assert request.fingerprint


def test_silent_server_gets_the_rfc8489_schedule_then_fails() -> None:
    async def go() -> tuple[str, float, FakeNetwork]:
        net = FakeNetwork(servers={S1: silent()})
        with pytest.raises(StunTransactionError) as info:
            await client_for(net).binding(S1)
        return str(info.value), asyncio.get_running_loop().time(), net

    message, failed_at, net = run(go)
    # RTO 500 ms doubling, 7 transmissions, then 16 × RTO: failure at 39.5 s.
    assert net.times(S1) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert failed_at == pytest.approx(39.5)
    assert message == "198.51.100.1:3478: no answer to 7 requests in 39.5 s"


def test_retransmission_parameters_are_configurable() -> None:
    async def go() -> tuple[float, FakeNetwork]:
        net = FakeNetwork(servers={S1: silent()})
        client = client_for(net, rto=0.1, max_transmissions=3, final_wait=1.0)
        with pytest.raises(StunError):
            await client.binding(S1)
        return asyncio.get_running_loop().time(), net

    failed_at, net = run(go)
    assert net.times(S1) == [0.0, 0.1, 0.3]
    assert failed_at == pytest.approx(1.3)


def test_answer_to_a_retransmission_is_accepted_and_rtt_counts_from_the_first() -> None:
    async def go() -> tuple[BindingResult, StunClient, FakeNetwork]:
        net = FakeNetwork(servers={S1: answer(delay=0.05, after=3)})
        client = client_for(net)
        return await client.binding(S1), client, net

    result, client, net = run(go)
    assert result.mapped == MAPPED
    assert net.times(S1) == [0.0, 0.5, 1.5]  # no fourth transmission
    assert result.rtt == pytest.approx(1.55)
    assert client.stats.sent == 3 and client.stats.accepted == 1


def test_answers_with_a_wrong_transaction_id_are_ignored() -> None:
    async def go() -> tuple[BindingResult, StunClient]:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            forged = encode_binding_response(b"\x00" * 12, ("192.0.2.66", 6666))
            good = encode_binding_response(request.transaction_id, MAPPED)
            return [(0.01, forged, SELF), (0.02, good, SELF)]

        net.servers[S1] = behave
        client = client_for(net)
        return await client.binding(S1), client

    result, client = run(go)
    assert result.mapped == MAPPED
    assert client.stats.unmatched == 1


@pytest.mark.parametrize(
    "spoof_source",
    [("198.51.100.1", 3479), ("203.0.113.1", 3478), ("198.51.100.2", 3478)],
    ids=["other-port", "other-address", "neighbour"],
)
def test_answers_from_another_address_or_port_are_ignored(spoof_source: Address) -> None:
    async def go() -> tuple[BindingResult, StunClient]:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            spoof = encode_binding_response(request.transaction_id, ("192.0.2.66", 6666))
            good = encode_binding_response(request.transaction_id, MAPPED)
            return [(0.01, spoof, spoof_source), (0.02, good, SELF)]

        net.servers[S1] = behave
        client = client_for(net)
        return await client.binding(S1), client

    result, client = run(go)
    assert result.mapped == MAPPED  # not the spoofed 192.0.2.66:6666
    assert client.stats.wrong_source == 1


def test_only_spoofed_answers_mean_no_answer() -> None:
    async def go() -> FakeNetwork:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            spoof = encode_binding_response(request.transaction_id, ("192.0.2.66", 6666))
            return [(0.01, spoof, ("198.51.100.1", 9999))]

        net.servers[S1] = behave
        with pytest.raises(StunError, match="no answer"):
            await client_for(net, max_transmissions=2, final_wait=1).binding(S1)
        return net

    run(go)


def test_source_addresses_are_compared_in_canonical_form() -> None:
    server = ("2001:db8:0:0::0:1", 3478)

    async def go() -> BindingResult:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            data = encode_binding_response(request.transaction_id, ("2001:db8::10", 51820))
            return [(0.01, data, ("2001:db8::1", 3478))]

        net.servers[("2001:db8::1", 3478)] = behave
        return await client_for(net).binding(server)

    result = run(go)
    assert result.mapped == ("2001:db8::10", 51820)
    assert result.server == ("2001:db8::1", 3478)


def test_noise_requests_and_duplicates_are_ignored_and_counted() -> None:
    async def go() -> tuple[BindingResult, StunClient]:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            tid = request.transaction_id
            good = encode_binding_response(tid, MAPPED)
            as_request = encode_message(METHOD_BINDING, MessageClass.REQUEST, tid)
            return [
                (0.01, b"\x01\x00\x00\x00" + bytes(144), SELF),  # a WireGuard initiation
                (0.01, as_request, SELF),
                (0.02, good, SELF),
                (0.03, good, SELF),  # the same answer again
            ]

        net.servers[S1] = behave
        client = client_for(net)
        return await client.binding(S1), client

    result, client = run(go)
    assert result.mapped == MAPPED
    assert client.stats.malformed == 1 and client.stats.not_response == 1


def test_duplicate_answer_arriving_while_another_transaction_runs_is_counted() -> None:
    async def go() -> StunClient:
        net = FakeNetwork()

        def twice(request: StunMessage, count: int) -> list[Reply]:
            good = encode_binding_response(request.transaction_id, MAPPED)
            return [(0.01, good, SELF), (0.5, good, SELF)]

        net.servers[S1] = twice
        net.servers[S2] = answer(delay=1.0)
        client = client_for(net)
        await client.binding(S1)
        await client.binding(S2)  # S1's late duplicate arrives while this one waits
        return client

    client = run(go)
    assert client.stats.duplicate == 1 and client.stats.unmatched == 0


def test_error_response_fails_the_transaction_with_its_code() -> None:
    async def go() -> None:
        net = FakeNetwork()
        net.servers[S1] = lambda req, n: [
            (0.01, encode_binding_error(req.transaction_id, 500, "Server Error"), SELF)
        ]
        with pytest.raises(StunTransactionError) as info:
            await client_for(net).binding(S1)
        assert str(info.value) == "198.51.100.1:3478: error response 500 Server Error"
        assert info.value.server == S1

    run(go)


def test_unknown_comprehension_required_attribute_fails_the_transaction() -> None:
    async def go() -> None:
        net = FakeNetwork()

        def behave(request: StunMessage, count: int) -> list[Reply]:
            tid = request.transaction_id
            attrs = [
                (Attr.XOR_MAPPED_ADDRESS, encode_address(MAPPED, xor=True, transaction_id=tid)),
                (0x0077, b"?"),
            ]
            data = encode_message(METHOD_BINDING, MessageClass.SUCCESS, tid, attrs)
            return [(0.01, data, SELF)]

        net.servers[S1] = behave
        with pytest.raises(StunError, match=r"unusable response.*0x0077"):
            await client_for(net).binding(S1)

    run(go)


@pytest.mark.parametrize(
    ("mapped", "reason"),
    [
        (("0.0.0.0", 40000), "unspecified"),
        (("198.51.100.10", 0), "port 0"),
        (("2001:db8::1", 40000), "not an IPv4 address"),
        (("255.255.255.255", 40000), "broadcast"),
        (("127.0.0.1", 51820), "loopback"),
        (("169.254.1.1", 51820), "link-local"),
        (("240.0.0.1", 51820), "class E"),
        (("224.0.0.1", 51820), "multicast"),
    ],
)
def test_unusable_mappings_are_refused_with_the_reason(mapped: Address, reason: str) -> None:
    async def go() -> None:
        net = FakeNetwork(servers={S1: answer(mapped)})
        with pytest.raises(StunError, match=f"unusable mapped address .*{reason}"):
            await client_for(net).binding(S1)

    run(go)


@pytest.mark.parametrize(
    ("mapped", "reason"),
    [
        (("::ffff:255.255.255.255", 40000), "IPv4-mapped"),
        (("::ffff:198.51.100.10", 40000), "IPv4-mapped"),
        (("::1", 51820), "loopback"),
        (("fe80::1", 51820), "link-local"),
        (("ff02::1", 51820), "multicast"),
    ],
)
def test_unusable_ipv6_mappings_are_refused_with_the_reason(mapped: Address, reason: str) -> None:
    server = ("2001:db8::1", 3478)

    async def go() -> None:
        net = FakeNetwork(servers={server: answer(mapped)}, family=socket.AF_INET6)
        with pytest.raises(StunError, match=f"unusable mapped address .*{reason}"):
            await client_for(net).binding(server)

    run(go)


def test_an_unusable_mapping_from_one_server_falls_back_to_the_next() -> None:
    """An on-path answer naming 255.255.255.255 costs one server, not discovery."""

    async def go() -> BindingResult:
        net = FakeNetwork(servers={S1: answer(("255.255.255.255", 40000)), S2: answer()})
        return await client_for(net).discover([format_address(S1), format_address(S2)])

    assert run(go).mapped == MAPPED


def test_send_failure_fails_at_once() -> None:
    async def go() -> float:
        net = FakeNetwork(send_error={S1: OSError(101, "Network is unreachable")})
        with pytest.raises(StunError, match="send failed: Network is unreachable"):
            await client_for(net).binding(S1)
        return asyncio.get_running_loop().time()

    assert run(go) == 0.0


def test_receive_failure_fails_the_waiting_transaction() -> None:
    async def go() -> float:
        net = FakeNetwork(servers={S1: silent()}, recv_error=OSError(9, "Bad file descriptor"))
        with pytest.raises(StunError, match="receive failed: Bad file descriptor"):
            await client_for(net).binding(S1)
        return asyncio.get_running_loop().time()

    assert run(go) == 0.0


def test_cancelled_transaction_stops_retransmitting() -> None:
    async def go() -> FakeNetwork:
        net = FakeNetwork(servers={S1: silent()})
        task = asyncio.ensure_future(client_for(net).binding(S1))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(100)
        return net

    assert run(go).times(S1) == [0.0, 0.5]


def test_bad_parameters_are_refused() -> None:
    net = FakeNetwork()
    for kw in ({"rto": 0}, {"max_transmissions": 0}, {"final_wait": -1}, {"stagger": -1}):
        with pytest.raises(ValueError):
            StunClient(net, **kw)


# --------------------------------------------------------------------------- discovery


def test_dead_first_server_costs_one_rto_not_the_whole_transaction() -> None:
    async def go() -> tuple[BindingResult, float, FakeNetwork]:
        net = FakeNetwork(servers={S1: silent(), S2: answer(delay=0.01)})
        result = await client_for(net).discover(["198.51.100.1:3478", "203.0.113.1"])
        return result, asyncio.get_running_loop().time(), net

    result, done_at, net = run(go)
    assert result.server == S2 and result.mapped == MAPPED
    assert net.times(S2) == [0.5]  # started after one RTO of silence
    assert done_at == pytest.approx(0.51)
    assert net.times(S1) == [0.0, 0.5]  # and S1 was still being retried meanwhile


def test_a_working_first_server_is_the_only_one_asked() -> None:
    async def go() -> tuple[BindingResult, FakeNetwork]:
        net = FakeNetwork(servers={S1: answer(delay=0.2), S2: answer(("203.0.113.99", 1))})
        return await client_for(net).discover(["198.51.100.1", "203.0.113.1"]), net

    result, net = run(go)
    assert result.server == S1 and net.times(S2) == []


def test_earlier_server_answering_late_still_wins_over_a_slower_later_one() -> None:
    async def go() -> BindingResult:
        net = FakeNetwork(
            servers={S1: answer(("198.51.100.11", 1), delay=0.7), S2: answer(delay=0.3)}
        )
        return await client_for(net).discover(["198.51.100.1", "203.0.113.1"])

    # S1 answers at 0.7, S2 (started at 0.5) would answer at 0.8.
    assert run(go).server == S1


def test_first_valid_answer_wins_and_simultaneous_answers_go_by_configured_order() -> None:
    async def later_first() -> BindingResult:
        net = FakeNetwork(servers={S1: answer(delay=0.9), S2: answer(delay=0.1)})
        return await client_for(net).discover(["198.51.100.1", "203.0.113.1"])

    async def together() -> BindingResult:
        # S1 answers at 1.0; S2, started at 0.5, also at 1.0.
        net = FakeNetwork(servers={S1: answer(delay=1.0), S2: answer(delay=0.5)})
        return await client_for(net).discover(["198.51.100.1", "203.0.113.1"])

    assert run(later_first).server == S2  # S2 at 0.6 beats S1 at 0.9
    assert run(together).server == S1


def test_a_failing_server_releases_the_next_one_at_once() -> None:
    async def go() -> tuple[BindingResult, FakeNetwork]:
        net = FakeNetwork()
        net.servers[S1] = lambda req, n: [
            (0.01, encode_binding_error(req.transaction_id, 500, "Server Error"), SELF)
        ]
        net.servers[S2] = answer()
        return await client_for(net).discover(["198.51.100.1", "203.0.113.1"]), net

    result, net = run(go)
    assert result.server == S2 and net.times(S2) == [0.01]


def test_sequential_mode_waits_for_the_full_failure() -> None:
    async def go() -> tuple[BindingResult, FakeNetwork]:
        net = FakeNetwork(servers={S1: silent(), S2: answer()})
        client = client_for(net, stagger=math.inf, max_transmissions=2, final_wait=1.0)
        return await client.discover(["198.51.100.1", "203.0.113.1"]), net

    result, net = run(go)
    assert result.server == S2 and net.times(S2) == [1.5]


def test_all_servers_failing_names_each_failure_in_configured_order() -> None:
    async def go() -> str:
        net = FakeNetwork(servers={S1: silent()})
        net.servers[S2] = lambda req, n: [
            (0.01, encode_binding_error(req.transaction_id, 500, "Server Error"), SELF)
        ]
        client = client_for(net, max_transmissions=2, final_wait=1.0)
        with pytest.raises(StunError) as info:
            await client.discover(["198.51.100.1:3478", "203.0.113.1", "[2001:db8::1]:3478"])
        return str(info.value)

    assert run(go) == (
        "no STUN server answered: 198.51.100.1:3478: no answer to 2 requests in 1.5 s; "
        "203.0.113.1: error response 500 Server Error; "
        "[2001:db8::1]:3478: not an IPv4 address"
    )


def test_discover_with_nothing_configured() -> None:
    async def go() -> None:
        with pytest.raises(StunError, match="no STUN servers configured"):
            await client_for(FakeNetwork()).discover([])

    run(go)


def test_cancelled_discovery_stops_every_transaction() -> None:
    async def go() -> FakeNetwork:
        net = FakeNetwork(servers={S1: silent(), S2: silent()})
        task = asyncio.ensure_future(client_for(net).discover(["198.51.100.1", "203.0.113.1"]))
        await asyncio.sleep(0.7)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(100)
        return net

    net = run(go)
    assert net.times(S1) == [0.0, 0.5] and net.times(S2) == [0.5]


def test_family_defaults_to_the_transports() -> None:
    v6 = ("2001:db8::1", 3478)

    async def go() -> BindingResult:
        net = FakeNetwork(servers={v6: answer(("2001:db8::10", 51820))}, family=socket.AF_INET6)
        return await client_for(net).discover(["198.51.100.1", "[2001:db8::1]"])

    assert run(go).server == v6


def test_clients_can_take_turns_on_one_transport() -> None:
    """The engine discovers with one client, then runs mapping tests with another."""

    async def go() -> tuple[BindingResult, BindingResult]:
        net = FakeNetwork(servers={S1: answer(), S2: answer(("198.51.100.10", 40001))})
        first = await client_for(net).discover(["198.51.100.1"])
        second = await client_for(net, rto=0.2).binding(S2)
        return first, second

    first, second = run(go)
    assert first.mapped == MAPPED and second.mapped == ("198.51.100.10", 40001)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("stun.example.org", ("stun.example.org", 3478)),
        ("stun.example.org:19302", ("stun.example.org", 19302)),
        ("198.51.100.1", ("198.51.100.1", 3478)),
        ("198.51.100.1:3479", ("198.51.100.1", 3479)),
        ("[2001:db8::1]:3479", ("2001:db8::1", 3479)),
        ("[::1]", ("::1", 3478)),
        ("2001:db8::1", ("2001:db8::1", 3478)),
        ("  stun.example.org:1  ", ("stun.example.org", 1)),
    ],
)
def test_parse_server(spec: str, expected: Address) -> None:
    assert parse_server(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "  ", "[::1", "[::1]x", "[]:1", ":3478", "host:0", "host:65536", "host:abc", "host:"],
)
def test_parse_server_refuses_bad_names(spec: str) -> None:
    with pytest.raises(StunError):
        parse_server(spec)


def test_format_address() -> None:
    assert format_address(("198.51.100.1", 1)) == "198.51.100.1:1"
    assert format_address(("2001:db8::1", 1)) == "[2001:db8::1]:1"


FAKE_DNS = {
    "stun.example.org": [
        (socket.AF_INET, "198.51.100.1"),
        (socket.AF_INET6, "2001:db8::1"),
        (socket.AF_INET, "203.0.113.1"),
        (socket.AF_INET, "198.51.100.1"),
    ],
    "v6only.example.org": [(socket.AF_INET6, "2001:db8::2")],
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answer getaddrinfo from FAKE_DNS: tests must not reach a real resolver."""
    asked: list[str] = []

    async def getaddrinfo(
        self: asyncio.AbstractEventLoop, host: str, port: int, *, family: int = 0, **kw: Any
    ) -> list[tuple[Any, ...]]:
        asked.append(host)
        await asyncio.sleep(0.05)
        if host not in FAKE_DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                fam,
                socket.SOCK_DGRAM,
                17,
                "",
                (ip, port) if fam == socket.AF_INET else (ip, port, 0, 0),
            )
            for fam, ip in FAKE_DNS[host]
            if family in (0, fam)
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


async def test_resolve_servers_filters_families_keeps_order_and_skips_failures(
    fake_dns: list[str],
) -> None:
    specs = ["stun.example.org:3479", "missing.example.org", "192.0.2.9", "[2001:db8::9]"]
    assert await resolve_servers(specs, socket.AF_INET) == [
        ("198.51.100.1", 3479),
        ("203.0.113.1", 3479),
        ("192.0.2.9", 3478),
    ]
    assert await resolve_servers(specs, socket.AF_INET6) == [
        ("2001:db8::1", 3479),
        ("2001:db8::9", 3478),
    ]
    assert "192.0.2.9" not in fake_dns  # literals never reach the resolver


async def test_resolve_servers_fails_when_nothing_resolves(fake_dns: list[str]) -> None:
    with pytest.raises(StunError) as info:
        await resolve_servers(["missing.example.org", "v6only.example.org"], socket.AF_INET)
    assert "missing.example.org: cannot resolve: Name or service not known" in str(info.value)
    assert "v6only.example.org: no IPv4 address" in str(info.value)


def test_discover_resolves_names_and_tries_each_address(fake_dns: list[str]) -> None:
    async def go() -> tuple[BindingResult, FakeNetwork]:
        net = FakeNetwork(servers={S1: silent(), S2: answer()})
        result = await client_for(net).discover(["missing.example.org", "stun.example.org"])
        return result, net

    result, net = run(go)
    assert result.server == S2
    # Both names were resolved concurrently (0.05 s); the first address of the good name
    # was tried, then after one RTO its second address.
    assert net.times(S1) == [0.05, 0.55] and net.times(S2) == [0.55]


def test_discover_failure_names_the_resolved_address(fake_dns: list[str]) -> None:
    async def go() -> str:
        net = FakeNetwork(servers={S1: silent(), S2: silent()})
        client = client_for(net, max_transmissions=1, final_wait=1.0)
        with pytest.raises(StunError) as info:
            await client.discover(["stun.example.org", "missing.example.org"])
        return str(info.value)

    assert run(go) == (
        "no STUN server answered: "
        "stun.example.org (198.51.100.1:3478): no answer to 1 requests in 1.0 s; "
        "stun.example.org (203.0.113.1:3478): no answer to 1 requests in 1.0 s; "
        "missing.example.org: cannot resolve: Name or service not known"
    )


def test_ipv6_discovery_uses_ipv6_servers_only(fake_dns: list[str]) -> None:
    v6 = ("2001:db8::1", 3478)

    async def go() -> BindingResult:
        net = FakeNetwork(servers={v6: answer(("2001:db8::10", 51820))})
        client = client_for(net, family=socket.AF_INET6)
        return await client.discover(["198.51.100.1", "stun.example.org"])

    result = run(go)
    assert result.server == v6 and result.mapped == ("2001:db8::10", 51820)
