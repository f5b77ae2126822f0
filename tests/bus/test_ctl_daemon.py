"""stunmeshctl against two real daemons in the lab, each on its own private system bus: its
output is parsed as a script would (JSON) and read as a person would (text)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, PEER_IFACE
from stunmeshd.docgen.completion import scripts
from tests.bus.busmesh import BusMesh, by_iface, connected, wait_objects
from tests.bus.helpers import ctl, run
from tests.bus.sysbus import PYTHON

pytestmark = pytest.mark.root

DESCRIPTION = "site B, behind natB (endpoint-independent)"


async def output(argv: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    return out.decode()


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_ctl_on_a_real_daemon(bus_mesh: BusMesh, tmp_path: Path) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    config = bus_mesh.config_a()
    config["interfaces"]["wg0"]["peers"]["hostB"]["description"] = DESCRIPTION
    mesh.write_config(mesh.a, config)
    addr = bus_a.address

    # a monitor started before the daemon still names what the daemon brings
    monitor = await asyncio.create_subprocess_exec(
        *ctl(addr, "monitor", "--json"), stdout=asyncio.subprocess.PIPE
    )
    assert monitor.stdout is not None
    try:
        await asyncio.sleep(0.5)  # subscribed (nothing to print yet: no daemon)
        await bus_mesh.start(mesh.a, bus_a)
        await bus_mesh.start(mesh.b, bus_mesh.bus_b)
        client = await bus_a.connect()
        try:
            await bus_a.wait_for_name(BUS_NAME, timeout=20)
            objects = await wait_objects(client, connected)
        finally:
            client.disconnect()
        events = []
        async with asyncio.timeout(10):
            while not any(e.get("signal") == "PeerAdded" for e in events):
                events.append(json.loads(await monitor.stdout.readline()))
    finally:
        monitor.send_signal(2)
        assert await monitor.wait() == 0
    signals = [(e["object"], e["signal"], e.get("name")) for e in events]
    assert ("daemon", "started", None) in signals
    assert ("manager", "DeviceAdded", "wg0") in signals
    assert ("wg0", "PeerAdded", "wg0/hostB") in signals
    assert not any("Devices/" in str(e.get("name")) for e in events)

    ((dev_path, dev),) = by_iface(objects, DEVICE_IFACE).items()
    ((peer_path, _),) = by_iface(objects, PEER_IFACE).items()

    # show --json: names, state names, RFC 3339 times, the description, object paths kept
    shown = await run(*ctl(addr, "show", "--json"))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    (device,) = data["devices"]
    (peer,) = data["peers"]
    assert device["interface"] == "wg0" and device["state"] == "ready"
    assert device["public_key"] == mesh.a.wg.public_key_b64 == dev["PublicKey"]
    assert device["backend"] == "wireguard-go" and device["listen_port"] == 51820
    assert device["fwmark"] == dev["FwMark"] and device["peers"] == ["wg0/hostB"]
    assert device["public_endpoints"] == ["198.51.100.10:40000"]
    assert parse_time(device["next_refresh"]) > parse_time(device["last_refresh"])
    assert device["object_path"] == dev_path
    assert peer["peer"] == "wg0/hostB" and peer["interface"] == "wg0"
    assert peer["state"] == "connected" and peer["description"] == DESCRIPTION
    assert peer["endpoint"] == "203.0.113.20:51820" and peer["object_path"] == peer_path
    parse_time(peer["latest_handshake"])

    # show IFACE and show PEER as text: full keys, description, next refresh, fwmark
    text = (await run(*ctl(addr, "show", "wg0"))).stdout
    assert text.startswith("● wg0\n") and "● wg0/hostB" in text
    assert f"Public key: {mesh.a.wg.public_key_b64}" in text
    assert f"Public key: {mesh.b.wg.public_key_b64}" in text
    for label in ("Next refresh: ", "FwMark: ", "Backend: wireguard-go", "NAT mapping: "):
        assert label in text, (label, text)
    text = (await run(*ctl(addr, "show", "hostB"))).stdout
    assert text.startswith("● wg0/hostB\n") and f"Description: {DESCRIPTION}" in text
    assert "● wg0\n" not in text

    # shell completion asks the daemon for names, on the bus given on the command line
    script = tmp_path / "stunmeshctl.bash"
    script.write_text(scripts()["bash-completion/completions/stunmeshctl"])
    line = f"stunmeshctl --bus {addr} show "
    code = (
        f"source {script}; COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; "
        "COMP_WORDS=(stunmeshctl x show ''); COMP_CWORD=3; _stunmeshctl; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{PYTHON.parent}:{os.environ['PATH']}"}
    words = await output(["bash", "--norc", "-c", code], env)
    assert words.split() == ["wg0", "wg0/hostB", "hostB"], words
    fish = tmp_path / "stunmeshctl.fish"
    fish.write_text(scripts()["fish/vendor_completions.d/stunmeshctl.fish"])
    line = shlex.quote(f"stunmeshctl --bus={addr} peers ")
    words = await output(["fish", "--no-config", "-c", f"source {fish}; complete -C {line}"], env)
    assert [w.split("\t")[0] for w in words.split("\n") if w] == ["wg0"], words

    # status --json has the same names
    status = json.loads((await run(*ctl(addr, "status", "--json"))).stdout)
    assert status["manager"]["devices"] == ["wg0"] and status["manager"]["state"] == "running"

    # one exit status for an unknown name, whatever the command
    for argv in (("show", "wg9"), ("peers", "wg9"), ("refresh", "wg9"), ("refresh", "nobody")):
        gone = await run(*ctl(addr, *argv))
        assert gone.returncode == 5, (argv, gone)
        assert "no managed interface or peer" in gone.stderr and "wg0/hostB" in gone.stderr

    # log-level without an argument reads it; with one, changes it
    assert (await run(*ctl(addr, "log-level"))).stdout.strip() == "debug"
    assert (await run(*ctl(addr, "log-level", "info"))).returncode == 0
    level = json.loads((await run(*ctl(addr, "log-level", "--json"))).stdout)
    assert level == {"log_level": "info"}

    # refresh --wait: silent progress when not on a terminal, a progress line on one
    done = await run(*ctl(addr, "refresh", "--wait", "--timeout", "20"))
    assert done.returncode == 0 and done.stdout == "refreshed all interfaces\n", done
    assert done.stderr == ""
    on_tty = await run(
        "script", "-qec", shlex.join(ctl(addr, "refresh", "wg0", "--wait")), "/dev/null"
    )
    assert on_tty.returncode == 0, on_tty
    assert "refreshing interface wg0: wg0 " in on_tty.stdout
    assert on_tty.stdout.rstrip().endswith("refreshed interface wg0")

    # a timeout shorter than any cycle: a clear failure, and the cycle goes on
    slow = await run(*ctl(addr, "refresh", "--wait", "--timeout", "0.001"))
    assert slow.returncode == 1 and "no result within 0.001 s" in slow.stderr
    assert "goes on in the daemon" in slow.stderr
