"""The applet of a desktop user who may not refresh without authenticating: with no polkit
agent to ask, the daemon refuses, and the applet says so in a notification instead of
failing silently. The daemon runs nothing."""

from __future__ import annotations

import pytest

from stunmeshd.bus.names import BUS_NAME
from stunmeshd.lab.desktop import Desktop
from tests.applet.standins import NotificationServer, Tray, Watcher, has, serve
from tests.bus.busmesh import BusMesh
from tests.bus.helpers import Signals
from tests.bus.sysbus import TestUser

pytestmark = pytest.mark.root


async def test_refused_refresh_is_reported(lab: BusMesh, test_user: TestUser) -> None:
    mesh, bus_a = lab.mesh, lab.bus_a
    a_if = mesh.a.wg.ifname
    await lab.start(mesh.a, bus_a)
    await bus_a.wait_for_name(BUS_NAME, timeout=20)
    async with Desktop() as desktop:
        desk = await desktop.session.connect()
        system = await bus_a.connect()
        try:
            watcher, notes = Watcher(), NotificationServer()
            await serve(desk, "org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", watcher)
            await serve(
                desk, "org.freedesktop.Notifications", "/org/freedesktop/Notifications", notes
            )
            daemon_signals = await Signals(system).start()
            await desktop.applet(bus_a.address, run_as=test_user.argv)
            tray = await Tray(desk, await watcher.wait_items(1)).start()
            # polkit says "auth" (allow_any: auth_admin_keep) to a user outside any session:
            # Refresh stays clickable, an agent could ask for the password
            await tray.wait_until(lambda p, labels: has(labels, a_if, "ready"), timeout=30)
            _rev, items = await tray.layout()
            refresh = [p for _i, p in items if str(p.get("label", "")).strip() == "Refresh all"]
            assert refresh[0]["enabled"] is True

            daemon_signals.clear()  # the start-up cycle has ended (the device is ready)
            await tray.click(f"Refresh {a_if}")
            await notes.wait_for(lambda s: f"Not allowed to refresh {a_if}" in s)
            assert notes.seen[-1].icon == "dialog-password"
            await tray.labels()  # a round trip after the refusal: no refresh ran
            assert daemon_signals.members("RefreshCompleted") == []
        finally:
            system.disconnect()
            desk.disconnect()
