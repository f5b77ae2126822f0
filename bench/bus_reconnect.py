"""How soon the daemon owns its name again after the system bus comes back at the same address.

A private system bus (stunmeshd.lab.sysbus: its own socket in a temporary directory, nothing
else is touched; run as root, the bus policy lets only root own the name) and stunmeshd's
BusKeeper over a model with one device and 100 peers, in this process. Each run kills the bus
daemon, keeps it away for a while (0 to 3 s, spread over the runs so the keeper's retry timer
is met in every phase), starts a new one at the same address, and times from the new bus
answering to the name having an owner again (a client polling NameHasOwner every 10 ms).

    .venv/bin/python bench/bus_reconnect.py [--runs 10]

Last line: ``median_s=… max_s=… runs=…``. Target (docs/dbus-api.md, "Bus loss"): max_s < 5.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
from types import SimpleNamespace

from stunmeshd.bus import BusKeeper
from stunmeshd.bus.names import BUS_NAME
from stunmeshd.config import Config
from stunmeshd.lab.sysbus import PrivateBus, name_has_owner
from stunmeshd.model import DeviceState, ManagerState, Model, PeerState


def engine_with(peers: int) -> SimpleNamespace:
    model = Model()
    model.set_state(ManagerState.RUNNING)
    device = model.add_device("wg0", backend="wireguard-go", state=DeviceState.READY)
    for n in range(peers):
        model.add_peer(
            device,
            name=f"peer{n}",
            public_key=base64.b64encode(os.urandom(32)).decode(),
            store="dht",
            state=PeerState.CONNECTED,
        )
    return SimpleNamespace(
        model=model,
        config=Config(source=None, stun_servers=("198.51.100.1:3478",)),
        workers={"wg0": object()},
    )


async def owned_after(bus: PrivateBus, timeout: float = 30.0) -> float:
    """Seconds from the bus answering a first call to the name having an owner."""
    loop = asyncio.get_running_loop()
    client = await bus.connect()
    try:
        began = loop.time()
        async with asyncio.timeout(timeout):
            while True:
                if await name_has_owner(client, BUS_NAME):
                    return loop.time() - began
                await asyncio.sleep(0.01)
    finally:
        client.disconnect()


async def main(args: argparse.Namespace) -> None:
    engine = engine_with(100)
    async with PrivateBus() as bus:
        keeper = await BusKeeper.start(engine, bus.address)
        try:
            times = []
            for run in range(args.runs):
                await bus.kill()
                await asyncio.sleep(3.0 * run / max(1, args.runs - 1))
                bus.socket.unlink(missing_ok=True)
                await bus.start()
                took = await owned_after(bus)
                times.append(took)
                print(f"run {run + 1}: owned again after {took:.3f} s", flush=True)
            assert not keeper.failed.done()
        finally:
            await keeper.close()
    print(f"median_s={statistics.median(times):.3f} max_s={max(times):.3f} runs={len(times)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
