"""Many clients at once against the real daemon while refresh cycles run.

50 connections make 100 calls each, three times over (reads, lookups, Refresh on every level,
GetPermissions);
the only error allowed is the per-caller Refresh rate limit. Five listeners count every signal:
none may be lost (all listeners see the same sequence, and every completed cycle the daemon
logs arrives as RefreshCompleted). The daemon's memory must stay put (generous bound).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from stunmeshd.bus.names import (
    BUS_NAME,
    DEVICE_IFACE,
    MANAGER_IFACE,
    OBJECT_MANAGER_IFACE,
    PEER_IFACE,
    PROPERTIES_IFACE,
    ROOT,
    Error,
)
from tests.bus.busmesh import BusMesh, by_iface, connected, wait_objects
from tests.bus.helpers import Reply, Signals, call

pytestmark = pytest.mark.root

CLIENTS = 50
CALLS = 100
ROUNDS = 3  # the first round is the warm-up for the memory comparison
LISTENERS = 5
RSS_SLACK_KB = 10 * 1024  # growth allowed over the last rounds (a leak of 1 KiB/call is 10 MiB)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cycles_logged(log: list[dict[str, Any]]) -> int:
    return sum(1 for entry in log if entry.get("msg", "").startswith("refresh done"))


async def test_fifty_clients_while_cycles_run(bus_mesh: BusMesh) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    await bus_mesh.start(mesh.a, bus_a)
    await bus_mesh.start(mesh.b, bus_mesh.bus_b)
    await bus_a.wait_for_name(BUS_NAME, timeout=20)
    assert mesh.a.process is not None
    pid = mesh.a.process.pid

    probe = await bus_a.connect()
    listeners: list[Signals] = []
    clients: list[MessageBus] = []
    try:
        objects = await wait_objects(probe, connected)
        (dev_path,) = by_iface(objects, DEVICE_IFACE)
        (peer_path,) = by_iface(objects, PEER_IFACE)
        listeners = [await Signals(await bus_a.connect()).start() for _ in range(LISTENERS)]
        await quiet(mesh.a.log_lines)
        cycles_before = cycles_logged(mesh.a.log_lines())

        calls = [
            (peer_path, PROPERTIES_IFACE, "GetAll", "s", [PEER_IFACE]),
            (ROOT, OBJECT_MANAGER_IFACE, "GetManagedObjects", "", []),
            (ROOT, PROPERTIES_IFACE, "Get", "ss", [MANAGER_IFACE, "State"]),
            (ROOT, MANAGER_IFACE, "GetDeviceByInterface", "s", [mesh.a.wg.ifname]),
            (dev_path, DEVICE_IFACE, "Refresh", "a{sv}", [{}]),
            (ROOT, MANAGER_IFACE, "Refresh", "a{sv}", [{"wait": Variant("b", True)}]),
            (peer_path, PEER_IFACE, "Refresh", "a{sv}", [{}]),
            (ROOT, MANAGER_IFACE, "GetPermissions", "", []),
            (dev_path, PROPERTIES_IFACE, "GetAll", "s", [DEVICE_IFACE]),
            (ROOT, "org.freedesktop.DBus.Introspectable", "Introspect", "", []),
        ]
        clients = [await bus_a.connect() for _ in range(CLIENTS)]
        outcomes: Counter[str] = Counter()

        async def work(n: int, bus: MessageBus, count: int) -> None:
            start = n % len(calls)
            for path, iface, member, sig, body in itertools.islice(
                itertools.cycle(calls[start:] + calls[:start]), count
            ):
                reply: Reply = await call(bus, path, iface, member, sig, body, timeout=60)
                outcomes["ok" if reply.ok else reply.error] += 1
                if not reply.ok and reply.error != Error.LIMITS_EXCEEDED:
                    raise AssertionError(f"{member}: {reply.error}: {reply.text}")

        started = time.monotonic()
        await asyncio.gather(*(work(n, b, CALLS) for n, b in enumerate(clients)))
        rss_warm = rss_kb(pid)
        for _ in range(ROUNDS - 1):
            await asyncio.gather(*(work(n, b, CALLS) for n, b in enumerate(clients)))
        elapsed = time.monotonic() - started
        rss_end = rss_kb(pid)

        await quiet(mesh.a.log_lines)
        cycles = cycles_logged(mesh.a.log_lines()) - cycles_before
        await asyncio.sleep(0.5)  # the last signals are on their way
        print(
            f"\nstress: {ROUNDS}x{CLIENTS}x{CALLS} calls in {elapsed:.1f}s "
            f"outcomes={dict(outcomes)} "
            f"cycles={cycles} rss_warm_kb={rss_warm} rss_end_kb={rss_end} "
            f"signals={len(listeners[0].seen)}"
        )
        assert sum(outcomes.values()) == ROUNDS * CLIENTS * CALLS
        assert outcomes["ok"] > ROUNDS * CLIENTS * CALLS // 2
        assert cycles > 0  # refresh cycles did run under the load
        completed = [len(s.members("RefreshCompleted", dev_path)) for s in listeners]
        assert completed == [cycles] * LISTENERS
        reference = [
            (p, m, json.dumps(b, sort_keys=True, default=str)) for p, _i, m, b in listeners[0].seen
        ]
        for other in listeners[1:]:
            assert [
                (p, m, json.dumps(b, sort_keys=True, default=str)) for p, _i, m, b in other.seen
            ] == reference
        assert rss_end - rss_warm < RSS_SLACK_KB, (rss_warm, rss_end)
        assert mesh.a.process.returncode is None
    finally:
        for bus in [probe, *clients, *(s.bus for s in listeners)]:
            bus.disconnect()


async def quiet(lines: Any, still: float = 1.5, timeout: float = 60.0) -> None:
    """Wait until the daemon has logged no new full cycle for ``still`` seconds."""
    async with asyncio.timeout(timeout):
        last, since = cycles_logged(lines()), time.monotonic()
        while time.monotonic() - since < still:
            await asyncio.sleep(0.1)
            now = cycles_logged(lines())
            if now != last:
                last, since = now, time.monotonic()
