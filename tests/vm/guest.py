"""Helpers for the tests that run INSIDE the VM (``guest_*.py``): root, systemd as PID 1, a
throwaway root file system. Plain ``subprocess``: these tests drive systemctl, busctl and
journalctl the way an administrator would."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
UNIT = "stunmeshd.service"
BUS_NAME = "io.github.stunmeshd.StunMesh1"
OBJECT = "/io/github/stunmeshd/StunMesh1"
IFACE = "io.github.stunmeshd.StunMesh1"
CONFIG = Path("/etc/stunmeshd/config.yaml")
DROPIN_DIR = Path("/run/systemd/system/stunmeshd.service.d")

T = TypeVar("T")


def sh(
    *argv: str, check: bool = True, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion message carries its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def the_deb() -> Path:
    """The package ``make deb`` built (the host test builds it before booting the VM)."""
    debs = sorted((REPO / "dist").glob("stunmeshd_*.deb"))
    assert debs, "no dist/stunmeshd_*.deb: run make deb"
    return debs[-1]


def install_package() -> None:
    """``apt install`` the .deb, offline: every dependency is already on the host's root, which
    is this VM's root (there is no network device, and none is needed)."""
    sh("apt-get", "install", "-y", str(the_deb()), timeout=600)


def ensure_installed() -> None:
    if sh("dpkg-query", "-W", "-f=${Status}", "stunmeshd", check=False).stdout != (
        "install ok installed"
    ):
        install_package()


def unit_property(name: str, unit: str = UNIT) -> str:
    return sh("systemctl", "show", "-P", name, unit).stdout.strip()


def busctl_json(*args: str, check: bool = True) -> Any:
    """``busctl --json=short ARGS`` parsed; None when it failed and check is off."""
    proc = sh("busctl", "--json=short", *args, check=check)
    return json.loads(proc.stdout)["data"] if proc.returncode == 0 else None


def manager_property(name: str) -> Any:
    return busctl_json("get-property", BUS_NAME, OBJECT, IFACE, name)


def device_path(ifname: str) -> str:
    return busctl_json("call", BUS_NAME, OBJECT, IFACE, "GetDeviceByInterface", "s", ifname)[0]


def device_property(ifname: str, name: str) -> Any:
    return busctl_json("get-property", BUS_NAME, device_path(ifname), f"{IFACE}.Device", name)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (AssertionError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def write_dropin(name: str, text: str) -> None:
    DROPIN_DIR.mkdir(parents=True, exist_ok=True)
    (DROPIN_DIR / f"{name}.conf").write_text(text)
    sh("systemctl", "daemon-reload")


def remove_dropin(name: str) -> None:
    (DROPIN_DIR / f"{name}.conf").unlink(missing_ok=True)
    sh("systemctl", "daemon-reload")


def journal(unit: str = UNIT, *args: str) -> list[dict[str, Any]]:
    """The unit's journal entries (this boot) as journalctl's JSON objects."""
    out = sh("journalctl", "-b", "-u", unit, "-o", "json", "--no-pager", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]
