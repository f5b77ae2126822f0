"""stunmesh-applet against the real daemon in the lab: a private session bus with stand-ins
for the panel's StatusNotifierWatcher and the notification server, and host A's private
system bus (with polkitd) where a real stunmeshd runs.

The applet starts before the daemon, follows it to "connected", refreshes through its menu,
follows the peer going down and up (with rate-limited notifications), and outlives a daemon
restart.
"""

from __future__ import annotations

import pytest

from stunmeshd.bus.names import BUS_NAME
from stunmeshd.lab.desktop import Desktop
from stunmeshd.model import PeerState
from tests.applet.standins import (
    NotificationServer,
    Tray,
    Watcher,
    has,
    serve,
    tooltip_text,
)
from tests.bus.busmesh import BusMesh
from tests.bus.helpers import Signals

pytestmark = pytest.mark.root


async def test_applet_follows_refreshes_and_outlives_the_daemon(lab: BusMesh) -> None:
    mesh, bus_a = lab.mesh, lab.bus_a
    a_if = mesh.a.wg.ifname
    async with Desktop() as desktop:
        desk = await desktop.session.connect()  # the panel's and notification server's side
        system = await bus_a.connect()
        try:
            watcher, notes = Watcher(), NotificationServer()
            await serve(desk, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", watcher)
            await serve(
                desk, "org.freedesktop.Notifications", "/org/freedesktop/Notifications", notes
            )
            daemon_signals = await Signals(system).start()

            # stunmeshd is not running yet: the item says so
            applet = await desktop.applet(
                bus_a.address, "--notify-burst", "2", "--notify-interval", "3600"
            )
            tray = await Tray(desk, await watcher.wait_items(1)).start()
            props = await tray.properties()
            assert props["Id"] == "stunmesh-applet" and props["Category"] == "SystemServices"
            assert props["IconName"] == "stunmesh-offline" and props["Status"] == "Active"
            assert props["ItemIsMenu"] is True and props["Menu"] == "/MenuBar"
            assert props["IconThemePath"].endswith("desktop/icons")  # run from the checkout
            assert [(w, h) for w, h, _px in props["IconPixmap"]] == [
                (16, 16),
                (22, 22),
                (32, 32),
                (48, 48),
            ]
            assert tooltip_text(props) == "stunmeshd is not running"
            assert await tray.labels() == ["stunmeshd is not running"]

            # the daemons start: the applet follows the peer to "connected"
            await lab.start(mesh.a, bus_a)
            await lab.start(mesh.b, lab.bus_b)
            props, labels = await tray.wait_until(
                lambda p, labels: p["IconName"] == "stunmesh-connected", timeout=60
            )
            assert tooltip_text(props) == "1 of 1 peers connected"
            assert labels[0] == "stunmeshd: 1 of 1 peers connected"
            assert has(labels, a_if, "ready", "198.51.100.10:40000")
            assert has(labels, "hostB", "connected", "203.0.113.20:51820", "handshake", "ago")
            assert {"Refresh hostB", f"Refresh {a_if}", "Refresh all"} <= {
                label.strip() for label in labels
            }
            await notes.wait_for(lambda s: s == ["hostB connected"])
            assert notes.seen[0].body == f"{a_if}: 203.0.113.20:51820"

            # "Refresh" of the interface, clicked in the menu: the daemon runs a cycle
            daemon_signals.clear()
            await tray.click(f"Refresh {a_if}")
            await daemon_signals.wait_for(
                lambda s: bool(daemon_signals.members("RefreshCompleted")), timeout=30
            )
            assert daemon_signals.members("RefreshCompleted")[0] == [True, ""]

            # the peer goes down: its record in the store is damaged and WireGuard forgets
            # the session; the daemon re-fetches, cannot open the record and gives up
            record = mesh.record_path(mesh.b, mesh.a)
            good = record.read_text()
            record.write_text("00" * 96 + "\n")
            b_key = mesh.b.wg.public_key_b64
            await mesh.a.wg.wg("set", a_if, "peer", b_key, "remove")
            await mesh.a.wg.add_peer(mesh.b.wg.public_key, f"{mesh.b.wg.tunnel_ip}/32")
            props, labels = await tray.wait_until(
                lambda p, labels: p["IconName"] == "stunmesh-failed", timeout=60
            )
            assert props["Status"] == "NeedsAttention"
            assert "1 failed" in tooltip_text(props)
            assert has(labels, "hostB", "failed")
            await notes.wait_for(lambda s: s == ["hostB connected", "hostB failed"])
            assert "record refused" in notes.seen[1].body
            assert notes.seen[1].hints["urgency"] == 2

            # ... and up again: the record is back, "Refresh hostB" from the menu
            record.write_text(good)
            await tray.click("Refresh hostB")
            props, labels = await tray.wait_until(
                lambda p, labels: (
                    p["IconName"] == "stunmesh-connected" and has(labels, "hostB", "connected")
                ),
                timeout=60,
            )
            assert tray.statuses()[-2:] == ["NeedsAttention", "Active"]
            peer_states = [
                b[1]["State"]
                for b in daemon_signals.members("PropertiesChanged")
                if "State" in b[1]
            ]
            assert PeerState.FAILED in peer_states and peer_states[-1] == PeerState.CONNECTED
            # the third change (connected again) is over the burst of 2: held back
            await tray.labels()  # two round trips: a notification sent before them has arrived
            await tray.labels()
            assert notes.summaries() == ["hostB connected", "hostB failed"]

            # the daemon stops: "not running"; it comes back: the applet follows again
            await mesh.stop_daemon(mesh.a)
            props, labels = await tray.wait_until(
                lambda p, labels: p["IconName"] == "stunmesh-offline", timeout=30
            )
            assert labels == ["stunmeshd is not running"]
            await lab.start(mesh.a, bus_a)
            await bus_a.wait_for_name(BUS_NAME, timeout=20)
            props, labels = await tray.wait_until(
                lambda p, labels: p["IconName"] == "stunmesh-connected", timeout=60
            )
            assert has(labels, "hostB", "connected")
            assert applet.returncode is None
            # the restart passed the peer through "waiting" again: no news for the user
            await tray.labels()
            await tray.labels()
            assert notes.summaries() == ["hostB connected", "hostB failed"]
        finally:
            system.disconnect()
            desk.disconnect()
