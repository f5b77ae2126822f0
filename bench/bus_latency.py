"""How fast the D-Bus layer answers with 1,000 peers exported, against a minimal echo service.

A private dbus-daemon (its own socket in a temporary directory; nothing else is touched), and
one service process holding two connections: stunmeshd's BusService over a model with 1,000
peers, and a minimal dbus-fast service whose one method echoes its string argument. The
client (this process) alternates batches of ``Properties.GetAll`` on one Peer and ``Echo`` so
drift hits both alike, then times ``GetManagedObjects`` of the whole tree.

    .venv/bin/python bench/bus_latency.py [--peers 1000] [--calls 3000]

Last line: ``getall_p50_ms=… echo_p50_ms=… getall_ratio=… gmo_ms=…`` (gmo_ms: p50 of
GetManagedObjects). Targets: getall_ratio <= 1.5, gmo_ms <= 100.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from stunmeshd.bus.names import BUS_NAME, PEER_IFACE, ROOT, peer_path

ECHO_NAME = "io.github.stunmeshd.BenchEcho"
ECHO_PATH = "/io/github/stunmeshd/BenchEcho"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class Echo(ServiceInterface):
    """The baseline: the least a dbus-fast method call can cost."""

    def __init__(self) -> None:
        super().__init__(ECHO_NAME)

    @dbus_method(name="Echo")
    def echo(self, text: DBusStr) -> DBusStr:
        return text


# ---- the service process -------------------------------------------------------------------


async def serve(address: str, peers: int) -> None:
    from stunmeshd.bus import start_bus
    from stunmeshd.config import Config
    from stunmeshd.model import DeviceState, ManagerState, Model, PeerState

    model = Model()
    model.set_state(ManagerState.RUNNING)
    device = model.add_device(
        "wg0",
        backend="wireguard-go",
        listen_port=51820,
        state=DeviceState.READY,
        public_endpoints=("198.51.100.10:40000",),
    )
    for n in range(peers):
        model.add_peer(
            device,
            name=f"peer{n}",
            public_key=base64.b64encode(os.urandom(32)).decode(),
            store="dht",
            state=PeerState.CONNECTED,
            endpoint=f"203.0.113.20:{20000 + n}",
            latest_handshake=1_700_000_000_000_000 + n,
            rx_bytes=n * 1000,
            tx_bytes=n * 900,
        )
    engine = SimpleNamespace(
        model=model,
        config=Config(source=None, stun_servers=("198.51.100.1:3478",)),
        workers={"wg0": object()},
    )
    service = await start_bus(engine, address)  # type: ignore[arg-type]
    echo_bus = await MessageBus(bus_address=address).connect()
    echo_bus.export(ECHO_PATH, Echo())
    await echo_bus.request_name(ECHO_NAME)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    echo_bus.disconnect()
    await service.close()


# ---- the client ----------------------------------------------------------------------------


async def timed(bus: MessageBus, msg: Message, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        reply = await bus.call(msg)
        times.append((time.perf_counter() - start) * 1000)
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            raise SystemExit(f"{msg.member} failed: {reply.body if reply else None}")
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(address: str, peers: int, calls: int, gmo_calls: int) -> None:
    bus = await MessageBus(bus_address=address).connect()
    getall = Message(
        destination=BUS_NAME,
        path=peer_path(peers // 2 or 1),
        interface="org.freedesktop.DBus.Properties",
        member="GetAll",
        signature="s",
        body=[PEER_IFACE],
    )
    echo = Message(
        destination=ECHO_NAME,
        path=ECHO_PATH,
        interface=ECHO_NAME,
        member="Echo",
        signature="s",
        body=["stunmesh"],
    )
    gmo = Message(
        destination=BUS_NAME,
        path=ROOT,
        interface="org.freedesktop.DBus.ObjectManager",
        member="GetManagedObjects",
    )
    first = await bus.call(gmo)
    assert first is not None and len(first.body[0]) == peers + 1, "tree incomplete"
    await timed(bus, getall, 300)  # warm-up
    await timed(bus, echo, 300)
    getall_t: list[float] = []
    echo_t: list[float] = []
    batch = 100
    for _ in range(max(calls // batch, 1)):
        getall_t += await timed(bus, getall, batch)
        echo_t += await timed(bus, echo, batch)
    gmo_t = await timed(bus, gmo, gmo_calls)
    bus.disconnect()
    g50, e50 = statistics.median(getall_t), statistics.median(echo_t)
    print(f"peers={peers} calls={len(getall_t)} each, GetManagedObjects x{gmo_calls}")
    print(f"Peer GetAll:        p50={g50:.3f} ms  p99={p(getall_t, 0.99):.3f} ms")
    print(f"Echo (baseline):    p50={e50:.3f} ms  p99={p(echo_t, 0.99):.3f} ms")
    print(
        f"GetManagedObjects:  p50={statistics.median(gmo_t):.2f} ms  "
        f"p99={p(gmo_t, 0.99):.2f} ms  ({len(first.body[0])} objects)"
    )
    print(
        f"getall_p50_ms={g50:.3f} echo_p50_ms={e50:.3f} getall_ratio={g50 / e50:.2f} "
        f"gmo_ms={statistics.median(gmo_t):.2f}"
    )


async def main(args: argparse.Namespace) -> None:
    if shutil.which("dbus-daemon") is None:
        raise SystemExit("dbus-daemon is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="smd-bench-bus-"))
    daemon = service = None
    try:
        config = workdir / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=workdir / "bus"))
        daemon = await asyncio.create_subprocess_exec(
            "dbus-daemon",
            f"--config-file={config}",
            "--nofork",
            "--print-address=1",
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert daemon.stdout is not None
        address = (await asyncio.wait_for(daemon.stdout.readline(), 10)).decode().strip()
        service = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            address,
            "--peers",
            str(args.peers),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert service.stdout is not None
        line = await asyncio.wait_for(service.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise SystemExit("the service did not start")
        await measure(address, args.peers, args.calls, args.gmo_calls)
    finally:
        for proc in (service, daemon):
            if proc is not None and proc.returncode is None:
                if proc is service and proc.stdin is not None:
                    proc.stdin.close()
                    try:
                        await asyncio.wait_for(proc.wait(), 5)
                        continue
                    except TimeoutError:
                        pass
                proc.terminate()
                await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=3000, help="GetAll and Echo calls each")
    parser.add_argument("--gmo-calls", type=int, default=50)
    parser.add_argument("--serve", metavar="ADDRESS", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.peers))
    else:
        asyncio.run(main(arguments))
