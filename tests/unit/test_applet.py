"""The applet's rules without a bus: the state it shows, its menu, its notification rate
limit, its icons, and that it stays a client (no engine, no stores imported)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from stunmeshd.applet import icons
from stunmeshd.applet.dbusmenu import DBusMenu
from stunmeshd.applet.mirror import Tree
from stunmeshd.applet.notify import Notice, PeerNews
from stunmeshd.applet.view import Entry, Overall, entries, overall, summary, tooltip
from stunmeshd.bus.names import (
    DEVICE_IFACE,
    MANAGER_IFACE,
    PEER_IFACE,
    ROOT,
    device_path,
    peer_path,
)
from stunmeshd.bus.ratelimit import RateLimiter
from stunmeshd.model import DeviceState, ManagerState, PeerState

KEY_B = "B" * 43 + "="
KEY_C = "C" * 43 + "="
NOW = 1_800_000_000.0


def tree(*peer_states: PeerState, device: DeviceState = DeviceState.READY, n: int = 1) -> Tree:
    """One device wg0 (object number ``n``) with peers hostB, hostC, ... in these states."""
    t = Tree(running=True, manager={"State": ManagerState.RUNNING})
    dev = device_path(n)
    t.devices[dev] = {"Interface": "wg0", "State": device, "PublicEndpoints": ["192.0.2.1:51820"]}
    for i, state in enumerate(peer_states):
        t.peers[peer_path(n * 10 + i)] = {
            "Device": dev,
            "Name": f"host{'BC'[i]}",
            "PublicKey": (KEY_B, KEY_C)[i],
            "State": state,
            "Endpoint": f"198.51.100.{i + 1}:51820",
            "LatestHandshake": int((NOW - 12) * 1_000_000) if state == PeerState.CONNECTED else 0,
            "LastError": "record refused: bad box" if state == PeerState.FAILED else "",
        }
    return t


# ---- the state shown --------------------------------------------------------------------


def test_overall_follows_the_peers_devices_and_the_daemon() -> None:
    assert overall(Tree()) is Overall.OFFLINE
    assert overall(tree(PeerState.CONNECTED, PeerState.CONNECTED)) is Overall.CONNECTED
    assert overall(tree(PeerState.CONNECTED, PeerState.APPLIED)) is Overall.CONNECTING
    assert overall(tree(PeerState.CONNECTED, PeerState.FAILED)) is Overall.FAILED
    assert overall(tree(PeerState.CONNECTED, device=DeviceState.FAILED)) is Overall.FAILED
    degraded = tree(PeerState.CONNECTED)
    degraded.manager["State"] = ManagerState.DEGRADED
    assert overall(degraded) is Overall.FAILED


def test_inactive_peers_are_counted_apart() -> None:
    t = tree(PeerState.CONNECTED, PeerState.NOT_ON_DEVICE)
    assert overall(t) is Overall.CONNECTED  # the daemon does not work on the second one
    assert summary(t) == "1 of 1 peers connected, 1 inactive"
    assert any("hostC — not on device" in e.label for e in entries(t, now=NOW))
    t.peers[peer_path(11)]["State"] = 7  # a newer daemon's inactive state
    assert overall(t) is Overall.CONNECTED and summary(t).endswith("1 inactive")


def test_tooltip_counts() -> None:
    assert tooltip(Tree()) == ("stunmeshd", "stunmeshd is not running")
    assert summary(tree(PeerState.CONNECTED, PeerState.FAILED)) == (
        "1 of 2 peers connected, 1 failed"
    )
    assert summary(tree(PeerState.WAITING, device=DeviceState.FAILED)) == (
        "0 of 1 peers connected, 1 interface failing"
    )


def test_menu_lists_devices_and_peers_with_a_refresh_for_each() -> None:
    items = entries(tree(PeerState.CONNECTED, PeerState.FAILED), now=NOW)
    labels = [e.label.strip() for e in items if not e.separator]
    assert labels == [
        "stunmeshd: 1 of 2 peers connected, 1 failed",
        "wg0 — ready — 192.0.2.1:51820",
        "hostB — connected — 198.51.100.1:51820 — handshake 12s ago",
        "Refresh hostB",
        "hostC — failed — 198.51.100.2:51820 — no handshake",
        "Refresh hostC",
        "Refresh wg0",
        "Refresh all",
    ]
    targets = [e.target for e in items if e.target]
    assert targets == [
        (peer_path(10), PEER_IFACE),
        (peer_path(11), PEER_IFACE),
        (device_path(1), DEVICE_IFACE),
        (ROOT, MANAGER_IFACE),
    ]
    assert [e.label for e in entries(Tree())] == ["stunmeshd is not running"]


# ---- the menu protocol ------------------------------------------------------------------


def test_menu_ids_stay_and_revision_moves_only_on_change() -> None:
    current = tree(PeerState.APPLIED)
    clicked: list[Entry] = []
    menu = DBusMenu(lambda: entries(current, now=NOW), clicked.append)
    sent: list[tuple[int, int]] = []
    menu.layout_updated = lambda rev, parent: sent.append((rev, parent))  # type: ignore[method-assign]
    assert menu.refresh() is True
    ids = {e.key: i for i, e in menu._shown}
    assert menu.refresh() is False  # nothing changed: no LayoutUpdated
    current = tree(PeerState.CONNECTED)
    assert menu.refresh() is True
    assert {e.key: i for i, e in menu._shown} == ids  # same entries, same ids
    assert [rev for rev, _ in sent] == [2, 3]

    layout = menu._layout(-1)
    assert layout[0] == 0 and len(layout[2]) == len(ids)
    info = next(i for i, e in menu._shown if e.key == f"info:{peer_path(10)}")
    refresh = next(i for i, e in menu._shown if e.key == f"refresh:{peer_path(10)}")
    menu.event(info, "clicked", None, 0)  # an information line does nothing
    menu.event(refresh, "hovered", None, 0)
    assert clicked == []
    menu.event(refresh, "clicked", None, 0)
    assert [e.target for e in clicked] == [(peer_path(10), PEER_IFACE)]


def test_menu_labels_keep_underscores() -> None:
    menu = DBusMenu(lambda: [Entry("x", "wg_office", target=(ROOT, MANAGER_IFACE))], print)
    menu.refresh()
    props = menu._layout(-1)[2][0].value[1]
    assert props["label"].value == "wg__office"  # a single "_" would be a mnemonic
    assert props["enabled"].value is True


# ---- notifications ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> Any:
        self.timers.append((self.now + delay, fn))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _when, fn in due:
            fn()


def news(clock: Clock, burst: int = 2, interval: float = 60.0) -> tuple[PeerNews, list[Notice]]:
    shown: list[Notice] = []
    limiter = RateLimiter(rate=1 / interval, burst=burst, clock=lambda: clock.now)
    return PeerNews(shown.append, limiter=limiter, call_later=clock.call_later), shown


def test_news_only_for_connected_and_failed_and_not_at_start_up() -> None:
    clock = Clock()
    pn, shown = news(clock)
    pn.observe(tree(PeerState.CONNECTED, PeerState.WAITING), quiet=True)  # the start-up tree
    assert shown == []
    pn.observe(tree(PeerState.CONNECTED, PeerState.APPLIED))
    pn.observe(tree(PeerState.CONNECTED, PeerState.CONNECTED))
    assert [n.summary for n in shown] == ["hostC connected"]
    assert shown[0].body == "wg0: 198.51.100.2:51820" and shown[0].urgency == 1
    pn.observe(tree(PeerState.FAILED, PeerState.CONNECTED))
    assert shown[-1].summary == "hostB failed" and shown[-1].urgency == 2
    assert shown[-1].body == "wg0: record refused: bad box"


def test_a_daemon_restart_is_no_news() -> None:
    clock = Clock()
    pn, shown = news(clock)
    pn.observe(tree(PeerState.CONNECTED), quiet=True)
    # the daemon restarts: new object numbers, the peer passes through "waiting" again
    pn.observe(tree(PeerState.WAITING, n=2))
    pn.observe(tree(PeerState.CONNECTED, n=2))
    assert shown == []


def test_flapping_peer_is_rate_limited_with_one_trailing_notice() -> None:
    clock = Clock()
    pn, shown = news(clock, burst=2, interval=60.0)
    pn.observe(tree(PeerState.WAITING), quiet=True)
    for state in [PeerState.CONNECTED, PeerState.FAILED] * 3 + [PeerState.CONNECTED]:
        pn.observe(tree(state))
        clock.advance(1)
    # two at once, the other five changes held back
    assert [n.summary for n in shown] == ["hostB connected", "hostB failed"]
    assert len(clock.timers) == 1  # one trailing notice scheduled, not one per change
    clock.advance(60)
    assert [n.summary for n in shown] == ["hostB connected", "hostB failed", "hostB connected"]
    assert clock.timers == []


def test_no_trailing_notice_when_the_peer_is_back_where_it_was_shown() -> None:
    clock = Clock()
    pn, shown = news(clock, burst=1, interval=60.0)
    pn.observe(tree(PeerState.WAITING), quiet=True)
    pn.observe(tree(PeerState.CONNECTED))
    pn.observe(tree(PeerState.FAILED))  # held back
    pn.observe(tree(PeerState.CONNECTED))  # and back: nothing new for the user
    clock.advance(60)
    assert [n.summary for n in shown] == ["hostB connected"]


def test_the_limit_is_per_peer() -> None:
    clock = Clock()
    pn, shown = news(clock, burst=1, interval=3600.0)
    pn.observe(tree(PeerState.WAITING, PeerState.WAITING), quiet=True)
    pn.observe(tree(PeerState.CONNECTED, PeerState.CONNECTED))
    assert sorted(n.summary for n in shown) == ["hostB connected", "hostC connected"]


# ---- icons ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(Overall))
def test_pixmaps_are_argb_discs_in_the_state_colour(state: Overall) -> None:
    for width, height, data in icons.pixmaps(state):
        assert len(data) == width * height * 4
        centre = ((height // 2) * width + width // 2) * 4
        edge = ((height // 2) * width + 1) * 4  # inside the disc, outside the ring
        assert data[0] == 0  # a transparent corner
        assert data[centre] == 255 and data[edge] == 255
        assert tuple(data[edge + 1 : edge + 4]) == icons.COLOURS[state]


def test_icon_names_come_from_our_icon_directory_or_the_standard_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    icons.theme_path.cache_clear()
    monkeypatch.setattr(icons, "CHECKOUT_ICONS", tmp_path / "none")
    monkeypatch.setattr(icons, "RUNTIME_ICONS", tmp_path / "none")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "usr"))
    try:
        assert icons.icon_name(Overall.FAILED) == "network-error"  # not installed anywhere
        assert icons.theme_path() == ""
        ours = tmp_path / "usr" / "stunmeshd" / "icons"
        status = ours / "hicolor" / "scalable" / "status"
        status.mkdir(parents=True)
        (status / "stunmesh-connected.svg").write_text("<svg/>")
        icons.theme_path.cache_clear()
        assert icons.icon_name(Overall.FAILED) == "stunmesh-failed"
        assert icons.theme_path() == str(ours)  # the host looks there
    finally:
        icons.theme_path.cache_clear()


def test_the_shipped_svg_icons_exist_for_every_state() -> None:
    status = icons.CHECKOUT_ICONS / "hicolor" / "scalable" / "status"
    for state in Overall:
        svg = (status / f"{icons.OWN_NAMES[state]}.svg").read_text()
        r, g, b = icons.COLOURS[state]
        assert f"#{r:02x}{g:02x}{b:02x}" in svg  # the same colour as the pixmap fallback


# ---- a client only ------------------------------------------------------------------------


def test_the_applet_imports_neither_the_engine_nor_the_stores() -> None:
    code = (
        "import sys, stunmeshd.applet.app; "
        "print(' '.join(m for m in sys.modules if m.startswith('stunmeshd')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "stunmeshd.applet.app" in loaded
    assert not {m for m in loaded if m.startswith(("stunmeshd.engine", "stunmeshd.stores"))}
    assert "stunmeshd.bus.service" not in loaded and "stunmeshd.daemon" not in loaded


def test_refresh_is_greyed_out_only_when_polkit_says_no() -> None:
    for answer, enabled in (("yes", True), ("auth", True), ("no", False)):
        t = tree(PeerState.CONNECTED)
        t.permissions = {"io.github.stunmeshd.StunMesh1.refresh": answer}
        clicked: list[Entry] = []
        menu = DBusMenu(lambda t=t: entries(t, now=NOW), clicked.append)
        menu.refresh()
        refreshes = [(i, e) for i, e in menu._shown if e.target is not None]
        assert len(refreshes) == 3
        for item_id, _entry in refreshes:
            assert _props_enabled(menu, item_id) is enabled
            menu.event(item_id, "clicked", None, 0)
        assert len(clicked) == (3 if enabled else 0)


def _props_enabled(menu: DBusMenu, item_id: int) -> bool:
    layout = menu._layout(-1)
    child = next(c.value for c in layout[2] if c.value[0] == item_id)
    return bool(child[1]["enabled"].value)


# ---- autostart --------------------------------------------------------------------------


def test_autostart_on_copies_the_installed_entry_and_off_removes_it(tmp_path: Any) -> None:
    share = tmp_path / "share" / "applications"
    share.mkdir(parents=True)
    shipped = icons.CHECKOUT_ICONS.parent / "io.github.stunmeshd.Applet.desktop"
    (share / shipped.name).write_text(shipped.read_text() + "# the installed copy\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_DIRS": str(tmp_path / "share"),
    }
    entry = tmp_path / "config" / "autostart" / shipped.name

    def applet(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "stunmeshd.applet", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)

    on = applet("--autostart", "on")
    assert on.returncode == 0 and str(entry) in on.stdout
    assert entry.read_text() == (share / shipped.name).read_text()  # the installed one
    assert "\nExec=stunmesh-applet\n" in entry.read_text()
    off = applet("--autostart", "off")
    assert off.returncode == 0 and not entry.exists()
    assert applet("--autostart", "off").returncode == 0  # already off: fine
