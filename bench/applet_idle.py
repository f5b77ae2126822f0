"""What the tray applet costs while the daemon is idle: wake-ups per second and CPU.

The lab's two hosts connected by their daemons (directory store), host A's daemon on a
private system bus, the applet on a private session bus (a stand-in watcher registers it).
Once the tunnel is up the applet is watched for ``--seconds``: wake-ups are its voluntary
context switches (every thread), CPU is user+system time over wall time; the daemon's
signals in the same time are counted, since the applet wakes for those and nothing else.
Target: no more wake-ups than the daemon sends signals (it polls nothing).
Last line: ``wakeups_per_s=… signals_per_s=… cpu_pct=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbus_fast import Message, MessageType
from idle import sample  # type: ignore[import-not-found]

from stunmeshd.bus.names import BUS_NAME, DBUS_NAME, DBUS_PATH
from stunmeshd.lab.desktop import Desktop
from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.sysbus import PrivateBus
from tests.applet.standins import Tray, Watcher, has, serve


async def main(seconds: float) -> None:
    async with (
        PrivateBus() as bus_a,
        PrivateBus() as bus_b,
        MeshLab(store="dir", log_level="info") as mesh,
        Desktop() as desktop,
    ):
        await mesh.start_daemon(mesh.a, "--bus", bus_a.address)
        await mesh.start_daemon(mesh.b, "--bus", bus_b.address)
        session = await desktop.session.connect()
        system = await bus_a.connect()
        watcher = Watcher()
        await serve(session, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", watcher)
        applet = await desktop.applet(bus_a.address)
        tray = await Tray(session, await watcher.wait_items(1)).start()
        await tray.wait_until(lambda p, labels: has(labels, "hostB", "connected"), timeout=60)
        await asyncio.sleep(5)  # the daemons' start-up work (1 s polls) ends

        signals = 0

        def count(msg: Message) -> None:
            nonlocal signals
            if msg.message_type is MessageType.SIGNAL and msg.sender != DBUS_NAME:
                signals += 1

        await system.call(
            Message(
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_NAME,
                member="AddMatch",
                signature="s",
                body=[f"type='signal',sender='{BUS_NAME}'"],
            )
        )
        system.add_message_handler(count)
        loop = asyncio.get_running_loop()
        switches0, cpu0 = sample(applet.pid)
        t0 = loop.time()
        await asyncio.sleep(seconds)
        switches1, cpu1 = sample(applet.pid)
        elapsed = loop.time() - t0
        assert applet.returncode is None, "the applet died"
        session.disconnect()
        system.disconnect()
    wakeups = (switches1 - switches0) / elapsed
    print(
        f"idle {elapsed:.0f} s: applet {switches1 - switches0} wake-ups, "
        f"{cpu1 - cpu0:.2f} s CPU; daemon {signals} signals"
    )
    print(
        f"wakeups_per_s={wakeups:.2f} signals_per_s={signals / elapsed:.2f} "
        f"cpu_pct={100 * (cpu1 - cpu0) / elapsed:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(main(parser.parse_args().seconds))
