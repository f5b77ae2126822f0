"""The applet in a real tray: Xvfb, xfce4-panel's Status Tray (a StatusNotifierItem host since
4.16) and the real daemon in the lab. The screenshot must show the green "connected" icon in
the panel and, after a click on it, the open menu with one line of text per entry.

``STUNMESH_APPLET_SCREENSHOT=docs/applet-menu.png`` keeps the picture (``make
applet-screenshot``): the README shows it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stunmeshd.applet.icons import COLOURS
from stunmeshd.applet.view import Overall
from stunmeshd.lab.desktop import PANEL_SIZE, Desktop, Image, wait_for_name
from tests.applet.standins import Tray, has
from tests.bus.busmesh import BusMesh
from tests.prereq import require_tools

pytestmark = pytest.mark.root

DESKTOP_TOOLS = ("Xvfb", "xfce4-panel", "xdotool", "import", "convert")
GREEN = COLOURS[Overall.CONNECTED]
MENU_ENTRIES_WITH_TEXT = 6  # summary, wg0, hostB, Refresh hostB, Refresh wg0, Refresh all


def near(rgb: tuple[int, int, int], target: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target, strict=True))


def bbox(image: Image, test: object, y0: int, y1: int) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the pixels in rows y0..y1 for which ``test`` holds."""
    xs, ys = [], []
    for y in range(y0, y1):
        for x in range(image.width):
            if test(image.pixel(x, y)):  # type: ignore[operator]
                xs.append(x)
                ys.append(y)
    if not xs:
        return None
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def text_lines(image: Image, box: tuple[int, int, int, int]) -> int:
    """Bands of rows holding text (grey or darker pixels) inside ``box``."""
    x0, y0, x1, y1 = box
    bands, inside = 0, False
    for y in range(y0, y1):
        dark = any(sum(image.pixel(x, y)) < 3 * 190 for x in range(x0 + 2, x1 - 2))
        if dark and not inside:
            bands += 1
        inside = dark
    return bands


@pytest.fixture
async def desktop() -> AsyncIterator[Desktop]:
    require_tools(*DESKTOP_TOOLS)
    async with Desktop(panel=True) as desk:
        yield desk


async def test_icon_and_open_menu_in_xfce_panel(
    lab: BusMesh,
    desktop: Desktop,
    tmp_path: Path,
) -> None:
    mesh = lab.mesh
    await lab.start(mesh.a, lab.bus_a)
    await lab.start(mesh.b, lab.bus_b)
    applet = await desktop.applet(lab.bus_a.address)
    session = await desktop.session.connect()
    try:
        name = f"org.kde.StatusNotifierItem-{applet.pid}-1"
        await wait_for_name(session, name, timeout=20)
        tray = await Tray(session, name).start()
        await tray.wait_until(
            lambda p, labels: (
                p["IconName"] == "stunmesh-connected" and has(labels, "hostB", "connected")
            ),
            timeout=60,
        )

        # the icon is in the panel, green
        icon = None
        for _ in range(100):
            before = await desktop.pixels(await desktop.screenshot(tmp_path / "before.png"))
            icon = bbox(before, lambda rgb: near(rgb, GREEN), 0, PANEL_SIZE)
            if icon is not None and (icon[2] - icon[0]) >= 10:
                break
            await asyncio.sleep(0.1)
        assert icon is not None, f"no green icon in the panel\n{desktop.log_text()}"
        assert 10 <= icon[2] - icon[0] <= PANEL_SIZE and 10 <= icon[3] - icon[1] <= PANEL_SIZE
        below = before.region(0, PANEL_SIZE + 2, before.width, before.height)
        assert all(rgb == (0, 0, 0) for rgb in below), "something covers the screen already"

        # a click opens the menu under the panel: a light box with a line of text per entry
        await desktop.click((icon[0] + icon[2]) // 2, (icon[1] + icon[3]) // 2)
        menu = None
        for _ in range(100):
            after = await desktop.pixels(await desktop.screenshot(tmp_path / "menu.png"))
            menu = bbox(after, lambda rgb: sum(rgb) > 3 * 200, PANEL_SIZE + 1, after.height)
            if menu is not None and text_lines(after, menu) >= MENU_ENTRIES_WITH_TEXT:
                break
            await asyncio.sleep(0.1)
        assert menu is not None, "the menu did not open"
        assert text_lines(after, menu) >= MENU_ENTRIES_WITH_TEXT
        width = menu[2] - menu[0]
        assert width > 300, "the entries' text (endpoints, handshake age) is missing"

        # keep the picture: panel and menu
        crop = tmp_path / "applet-menu.png"
        right = min(after.width, menu[2] + 16)
        bottom = min(after.height, menu[3] + 16)
        await desktop.run(
            "convert",
            str(tmp_path / "menu.png"),
            "-crop",
            f"{right}x{bottom}+0+0",
            "+repage",
            str(crop),
        )
        assert crop.stat().st_size > 0
        if keep := os.environ.get("STUNMESH_APPLET_SCREENSHOT"):
            shutil.copy(crop, keep)
    finally:
        session.disconnect()
