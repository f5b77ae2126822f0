"""``stunmesh-applet --autostart on|off``: the user's own XDG autostart entry.

Autostart is off by default: the package puts the applet's desktop entry in
``share/applications`` only. ``on`` copies that entry into ``$XDG_CONFIG_HOME/autostart``
(the XDG autostart directory of this user), ``off`` removes the copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stunmeshd.applet.icons import CHECKOUT_ICONS, data_dirs

DESKTOP_FILE = "io.github.stunmeshd.Applet.desktop"


def installed_entry() -> Path | None:
    """The applet's desktop entry: installed (XDG data dirs), else the checkout's."""
    candidates = [d / "applications" / DESKTOP_FILE for d in data_dirs()]
    candidates.append(CHECKOUT_ICONS.parent / DESKTOP_FILE)
    return next((c for c in candidates if c.is_file()), None)


def autostart_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "autostart" / DESKTOP_FILE


def set_autostart(enabled: bool) -> str:
    """Turn the user's autostart on or off; returns what was done, for the user."""
    target = autostart_path()
    if not enabled:
        if target.exists():
            target.unlink()
            return f"removed {target}"
        return f"autostart was off ({target} does not exist)"
    source = installed_entry()
    if source is None:
        raise FileNotFoundError(f"{DESKTOP_FILE} is not installed in any applications directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"wrote {target}"
