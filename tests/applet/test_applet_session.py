"""The applet where stunmeshd is not installed and the panel comes and goes: it waits for
both on its own, registers with every new watcher, and stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from stunmeshd.lab.desktop import Desktop, wait_for_name
from stunmeshd.lab.sysbus import PrivateBus
from tests.applet.standins import Tray, Watcher, serve, tooltip_text
from tests.bus.conftest import require_bus_bed
from tests.installed import Installed

pytestmark = pytest.mark.root

WATCHER = ("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher")


async def test_not_installed_and_a_panel_that_restarts() -> None:
    require_bus_bed()
    async with PrivateBus() as system, Desktop() as desktop:
        # no daemon, no watcher, no notification server yet
        applet = await desktop.applet(system.address)
        first = await desktop.session.connect()
        second = await desktop.session.connect()
        try:
            name = f"org.kde.StatusNotifierItem-{applet.pid}-1"
            await wait_for_name(first, name, timeout=20)

            # the panel starts: the item registers with it
            watcher = Watcher()
            await serve(first, *WATCHER, watcher)
            assert await watcher.wait_items(1) == name
            tray = await Tray(second, name).start()
            props = await tray.properties()
            assert props["IconName"] == "stunmesh-offline"
            assert tooltip_text(props) == "stunmeshd is not running"
            assert await tray.labels() == ["stunmeshd is not running"]

            # the panel restarts (its name moves to a new connection): registered again
            first.disconnect()
            again = Watcher()
            await serve(second, *WATCHER, again)
            assert await again.wait_items(1) == name
            assert applet.returncode is None

            # SIGTERM: a clean exit
            applet.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(applet.wait(), 10) == 0
        finally:
            second.disconnect()


def test_an_installed_applet_finds_its_icons(installed: Installed) -> None:
    """make install's icons, at any PREFIX, even when XDG_DATA_DIRS does not name it."""
    code = (
        "from stunmeshd.applet import icons; from stunmeshd.applet.view import Overall; "
        "print(icons.theme_path()); print(icons.icon_name(Overall.FAILED))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "XDG_DATA_DIRS": "/nonexistent"}
    out = subprocess.run(
        [str(installed.python), "-I", "-c", code],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    ours = installed.prefix / "share" / "stunmeshd" / "icons"
    assert out.stdout.split() == [str(ours), "stunmesh-failed"]
    assert (ours / "hicolor" / "scalable" / "status" / "stunmesh-failed.svg").is_file()
