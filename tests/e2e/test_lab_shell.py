"""``make lab``: the lab stays up with both daemons on their buses; a lab shell's stunmeshctl,
busctl and wg see that host; ``down`` tears it all down."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from stunmeshd.lab.shell import STATE
from stunmeshd.lab.topology import lab_owners

pytestmark = pytest.mark.root

LAB = [sys.executable, "-m", "stunmeshd.lab.shell"]


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def in_host(host: str, *command: str) -> tuple[int, str]:
    return await run(*LAB, "shell", host, "--", *command)


async def test_lab_up_shell_down() -> None:
    up = await asyncio.create_subprocess_exec(
        *LAB, "up", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert up.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(60):
            while "Stop with Ctrl-C" not in "".join(printed):
                line = (await up.stdout.readline()).decode()
                assert line, "".join(printed)
                printed.append(line)
        text = "".join(printed)
        assert "make lab-shell HOST=A" in text and "198.51.100.10" in text
        owner = json.loads(STATE.read_text())["pid"]
        assert owner == up.pid and owner in lab_owners().values()

        # host A's stunmeshctl talks to A's daemon; wait until the tunnel is up
        async with asyncio.timeout(30):
            while True:
                code, out = await in_host("A", "stunmeshctl", "--json", "show")
                assert code == 0, out
                peers = json.loads(out)["peers"]
                if peers and peers[0]["state"] == "connected":
                    break
                await asyncio.sleep(0.2)
        assert peers[0]["peer"] == "wg0/hostB"
        code, out = await in_host("B", "stunmeshctl", "peers")
        assert code == 0 and "hostA" in out and "hostB" not in out, out
        # wg sees this host's interface; busctl uses this host's bus
        code, out = await in_host("A", "wg", "show", "wg0", "endpoints")
        assert code == 0 and "203.0.113.20:51820" in out, out
        code, out = await in_host(
            "A", "busctl", "--system", "tree", "io.github.stunmeshd.StunMesh1"
        )
        assert code == 0 and "/io/github/stunmeshd/StunMesh1/Devices" in out, out
        code, out = await in_host("A", "ping", "-c", "1", "-W", "2", "198.19.0.2")
        assert code == 0, out

        # a second lab is refused while this one is up
        code, out = await run(*LAB, "up")
        assert code == 1 and "already up" in out
    finally:
        code, out = await run(*LAB, "down")
        assert await asyncio.wait_for(up.wait(), 30) == 0
    assert code == 0, out
    assert not STATE.exists()
    assert up.pid not in lab_owners().values()  # namespaces and mounts are gone
    code, out = await in_host("A", "true")
    assert code != 0 and "no lab is up" in out
