"""A desktop session of our own, for the tray applet: a private session bus, and on demand an
X server (Xvfb) with xfce4-panel's Status Tray, a real StatusNotifierItem host.

Everything lives in a fresh directory (sockets, XDG config, caches) and ends with ``close``;
nothing of the machine's own sessions is used or changed. Only unix sockets: no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dbus_fast.aio import MessageBus

from stunmeshd.lab.resource import Resource
from stunmeshd.lab.sysbus import name_has_owner

REPO = Path(__file__).resolve().parents[2]
WATCHER_NAME = "org.kde.StatusNotifierWatcher"
SCREEN = (720, 360)
PANEL_SIZE = 32  # px, the panel at the top edge of the screen

# One panel at the top, holding only the Status Tray (systray, which hosts SNI items).
PANEL_CONFIG = f"""<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="{PANEL_SIZE}"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
"""


@dataclass(frozen=True)
class Image:
    """RGB pixels, row by row."""

    width: int
    height: int
    data: bytes

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * 3
        return self.data[i], self.data[i + 1], self.data[i + 2]

    def region(self, x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int, int]]:
        return [self.pixel(x, y) for y in range(y0, y1) for x in range(x0, x1)]


# A session bus like Debian's session.conf, that also lets other users connect: the tests run
# an applet as an unprivileged user next to the root-run stand-ins.
SESSION_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <standard_session_servicedirs/>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class SessionBus(Resource):
    """``dbus-daemon --session`` on a socket in ``workdir``; services it activates get
    ``env`` (xfconfd must find the panel's config there)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env or {}
        self.socket = workdir / "session_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.daemon: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self.workdir / "session-bus.conf"
        config.write_text(SESSION_CONFIG.format(socket=self.socket))
        with (self.workdir / "session-bus.log").open("ab") as log:
            self.daemon = await asyncio.create_subprocess_exec(
                "dbus-daemon",
                f"--config-file={config}",
                "--nofork",
                "--print-address=1",
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.daemon.stdout is not None
        if not await asyncio.wait_for(self.daemon.stdout.readline(), 10):
            raise RuntimeError("the session dbus-daemon did not start")

    async def connect(self) -> MessageBus:
        return await MessageBus(bus_address=self.address).connect()

    async def close(self) -> None:
        await _stop(self.daemon)


async def wait_for_name(bus: MessageBus, name: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await name_has_owner(bus, name):
                return
            await asyncio.sleep(0.05)


class Desktop(Resource):
    """A session bus, and with ``panel=True`` Xvfb and xfce4-panel (its watcher and host)."""

    def __init__(self, *, panel: bool = False) -> None:
        self.panel = panel
        self.workdir = Path(tempfile.mkdtemp(prefix="smd-desktop-"))
        self.workdir.chmod(0o755)  # an unprivileged applet must reach the session bus socket
        self.display = ""
        self.env: dict[str, str] = {
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
            "XDG_RUNTIME_DIR": str(self.workdir / "runtime"),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "NO_AT_BRIDGE": "1",  # no accessibility bus
            "GTK_THEME": "Adwaita",
        }
        self.session = SessionBus(self.workdir, self.env)
        self.xvfb: asyncio.subprocess.Process | None = None
        self.xfce_panel: asyncio.subprocess.Process | None = None
        self.children: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for key in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME"):
            Path(self.env[key]).mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.panel:
            await self._start_x()
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.session.address
        await self.session.start()
        if self.panel:
            await self._start_panel()

    async def _start_x(self) -> None:
        read, write = os.pipe()
        width, height = SCREEN
        try:
            self.xvfb = await asyncio.create_subprocess_exec(
                "Xvfb",
                "-displayfd",
                str(write),
                "-screen",
                "0",
                f"{width}x{height}x24",
                "-nolisten",
                "tcp",
                pass_fds=(write,),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(write)
        loop = asyncio.get_running_loop()
        with os.fdopen(read, "rb") as pipe:
            number = await asyncio.wait_for(loop.run_in_executor(None, pipe.readline), 10)
        if not number.strip():
            raise RuntimeError("Xvfb did not start")
        self.display = f":{int(number)}"
        self.env["DISPLAY"] = self.display
        self.session.env = self.env

    async def _start_panel(self) -> None:
        channel = Path(self.env["XDG_CONFIG_HOME"]) / "xfce4/xfconf/xfce-perchannel-xml"
        channel.mkdir(parents=True, exist_ok=True)
        (channel / "xfce4-panel.xml").write_text(PANEL_CONFIG)
        with (self.workdir / "panel.log").open("ab") as log:
            self.xfce_panel = await asyncio.create_subprocess_exec(
                "xfce4-panel",
                "--disable-wm-check",
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        bus = await self.session.connect()
        try:
            await wait_for_name(bus, WATCHER_NAME, timeout=20)
        finally:
            bus.disconnect()

    async def spawn(self, *argv: str) -> asyncio.subprocess.Process:
        """A program in this session (its output in ``workdir``), stopped by ``close``."""
        log = (self.workdir / f"{Path(argv[0]).name}-{len(self.children)}.log").open("ab")
        with log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.children.append(proc)
        return proc

    async def applet(
        self, system_bus: str, *args: str, run_as: Callable[..., list[str]] | None = None
    ) -> asyncio.subprocess.Process:
        """stunmesh-applet in this session, following the daemon on ``system_bus``;
        ``run_as`` turns the command into another user's (``TestUser.argv``)."""
        argv = [
            sys.executable,
            "-m",
            "stunmeshd.applet",
            "--bus",
            system_bus,
            "--log-level",
            "info",
        ]
        argv += args
        return await self.spawn(*(run_as(*argv) if run_as else argv))

    async def run(self, *argv: str) -> bytes:
        """An X client (xdotool, import) against this display; its output."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode().strip()}")
        return out

    async def screenshot(self, path: Path) -> Path:
        await self.run("import", "-window", "root", str(path))
        return path

    async def pixels(self, path: Path) -> Image:
        """The screenshot's pixels (RGB), to check what it shows."""
        width, height = SCREEN
        data = await self.run("convert", str(path), "-depth", "8", "rgb:-")
        assert len(data) == width * height * 3, "not a screenshot of this screen"
        return Image(width, height, data)

    async def click(self, x: int, y: int) -> None:
        await self.run("xdotool", "mousemove", str(x), str(y), "click", "1")

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    async def close(self) -> None:
        for proc in reversed(self.children):
            await _stop(proc)
        await _stop(self.xfce_panel)
        await self.session.close()
        await _stop(self.xvfb)
        shutil.rmtree(self.workdir, ignore_errors=True)
