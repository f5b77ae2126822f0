"""The daemon's own errors say what to do (issue 15, part 4), on the real lab: not running as
root names the permission, and --oneshot names what can never succeed at once instead of
after its wait, and logs progress while it waits."""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from stunmeshd.lab.mesh import MeshLab
from tests.bus.sysbus import PYTHON, TestUser

pytestmark = pytest.mark.root

LONG_WAIT = "600"  # --oneshot-wait: the tests below must end long before it


async def oneshot(mesh: MeshLab, config: dict, *, user: TestUser | None = None) -> tuple[int, str]:
    """Run ``stunmeshd --oneshot`` on host A with ``config``; (exit status, its log)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o644)
        argv = [str(PYTHON), "-m", "stunmeshd", "-c", str(path), "--oneshot"]
        argv += ["--oneshot-wait", LONG_WAIT]
        if user is not None:
            argv = user.argv(*argv)
        proc = await mesh.a.site.host.spawn(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_oneshot_and_permission_errors_say_what_to_do(test_user: TestUser) -> None:
    async with MeshLab(store="dir") as mesh:
        good = mesh.config_for(mesh.a, mesh.b)
        good["log"] = {"level": "info", "format": "console"}

        # not root: the interface exists, but its control socket is root-only
        code, log = await oneshot(mesh, good, user=test_user)
        assert code == 1, log
        assert "must run as root" in log and "CAP_NET_ADMIN" in log, log
        assert "not found" not in log, log

        # a missing interface is named after the first cycle, not after the wait
        missing = yaml.safe_load(yaml.safe_dump(good))
        missing["interfaces"]["wg7"] = missing["interfaces"].pop("wg0")
        code, log = await oneshot(mesh, missing)
        assert code == 1 and "oneshot: cannot succeed: interface wg7" in log, log
        assert "not every peer got an endpoint" not in log

        # so is a configured peer that is not on the WireGuard interface
        stranger = yaml.safe_load(yaml.safe_dump(good))
        stranger["interfaces"]["wg0"]["peers"]["laptop"] = {
            "public_key": base64.b64encode(bytes(range(32))).decode(),
            "plugin": "lab",
        }
        code, log = await oneshot(mesh, stranger)
        assert code == 1, log
        assert "wg0: configured peer(s) laptop not on the WireGuard interface" in log, log
        assert "wg set wg0 peer" in log

        # success: progress while waiting (B starts only once A said it waits), the result
        path = mesh.lab.workdir / "oneshot-a.yaml"
        path.write_text(yaml.safe_dump(good))
        proc = await mesh.a.site.host.spawn(
            *(str(PYTHON), "-m", "stunmeshd", "-c", str(path), "--oneshot"),
            *("--oneshot-wait", LONG_WAIT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while "waiting up to 600 s for wg0/hostB" not in (lines or [""])[-1]:
                lines.append((await proc.stdout.readline()).decode())
                assert lines[-1], "".join(lines)
        assert "oneshot: 0 of 1 peer(s) have an endpoint" in lines[-1]
        await mesh.start_daemon(mesh.b)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        log = "".join(lines) + out.decode()
        assert proc.returncode == 0, log
        assert "oneshot: 1 of 1 peer(s) have an endpoint" in log
        assert "oneshot: every peer has an endpoint" in log
