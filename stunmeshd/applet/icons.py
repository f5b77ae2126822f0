"""The tray icon for each overall state: a theme name, and pixels for hosts without it.

Our own icons (``stunmesh-connected`` …, a hicolor-style tree in ``desktop/icons``) are
installed in ``$PREFIX/share/stunmeshd/icons``, a directory of their own rather than the
system's ``hicolor`` theme (no icon caches to rebuild, nothing left behind on removal): the
item names it in ``IconThemePath``, where SNI hosts look up ``IconName`` too. Run from a
checkout, the checkout's directory is used. Without either, a standard freedesktop name
stands in, and every state also carries a small drawn pixmap, every host's last fallback.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

from stunmeshd.applet.view import Overall

OWN_NAMES = {state: f"stunmesh-{state.value}" for state in Overall}
STANDARD_NAMES = {  # freedesktop icon naming spec / Adwaita names
    Overall.CONNECTED: "network-vpn",
    Overall.CONNECTING: "network-vpn-acquiring",
    Overall.FAILED: "network-error",
    Overall.OFFLINE: "network-offline",
}
COLOURS = {  # (r, g, b): the same as in the SVG icons
    Overall.CONNECTED: (0x2E, 0x7D, 0x32),
    Overall.CONNECTING: (0xF9, 0xA8, 0x25),
    Overall.FAILED: (0xC6, 0x28, 0x28),
    Overall.OFFLINE: (0x75, 0x75, 0x75),
}
PIXMAP_SIZES = (16, 22, 32, 48)
CHECKOUT_ICONS = Path(__file__).resolve().parents[2] / "desktop" / "icons"
# make install's runtime is $PREFIX/lib/stunmeshd: its icons are in $PREFIX/share (any PREFIX)
RUNTIME_ICONS = Path(sys.prefix).parents[1] / "share" / "stunmeshd" / "icons"

Pixmap = tuple[int, int, bytes]  # width, height, ARGB32 in network byte order


def data_dirs() -> list[Path]:
    """$XDG_DATA_HOME, then $XDG_DATA_DIRS (with the spec's defaults)."""
    home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(home), *(Path(d) for d in dirs.split(":") if d)]


def _has_own_icons(base: Path) -> bool:
    """Never raises: an unreadable data directory (another user's) just has no icons."""
    name = OWN_NAMES[Overall.CONNECTED]
    try:
        return any((base / "hicolor").glob(f"*/status/{name}.*"))
    except OSError:
        return False


@functools.cache
def theme_path() -> str:
    """``IconThemePath``: where our icons are (installed, else the checkout's), or ""."""
    candidates = [d / "stunmeshd" / "icons" for d in data_dirs()]
    candidates += [RUNTIME_ICONS, CHECKOUT_ICONS]
    return next((str(c) for c in candidates if _has_own_icons(c)), "")


def icon_name(state: Overall) -> str:
    return OWN_NAMES[state] if theme_path() else STANDARD_NAMES[state]


@functools.cache
def pixmaps(state: Overall) -> list[Pixmap]:
    return [_disc(size, COLOURS[state]) for size in PIXMAP_SIZES]


def _disc(size: int, rgb: tuple[int, int, int]) -> Pixmap:
    """A filled, anti-aliased disc with a white ring: readable on light and dark panels."""
    centre = (size - 1) / 2
    outer = size / 2 - 0.5
    ring_in, ring_out = outer * 0.45, outer * 0.62
    out = bytearray()
    for y in range(size):
        for x in range(size):
            d = math.hypot(x - centre, y - centre)
            alpha = max(0.0, min(1.0, outer + 0.5 - d))
            white = max(0.0, min(1.0, d - ring_in + 0.5)) * max(0.0, min(1.0, ring_out + 0.5 - d))
            r, g, b = (round(c + (255 - c) * white) for c in rgb)
            out += bytes((round(alpha * 255), r, g, b))
    return size, size, bytes(out)
