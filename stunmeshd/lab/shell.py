"""``make lab`` / ``make lab-shell HOST=A`` / ``make lab-down``: the lab kept up to try by hand.

``up`` builds the two-site lab (docs/testbed.md) with one private system bus (and polkitd) per
host, starts both daemons on them, prints the topology and how to get in, and stays up until
Ctrl-C, SIGTERM or ``down``. ``shell A`` runs a shell (or a command) inside host A's network
and mount namespaces with ``DBUS_SYSTEM_BUS_ADDRESS`` set to A's bus, so ``stunmeshctl``,
``busctl`` and ``wg`` work there as on a real machine. Only one lab is kept up at a time; its
description is a small JSON file under /run/stunmeshd-lab.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from stunmeshd.bus.names import BUS_NAME
from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.picture import topology_picture
from stunmeshd.lab.sysbus import PrivateBus
from stunmeshd.lab.topology import LAB_RUN_DIR, NatMode

STATE = LAB_RUN_DIR / "kept-up.json"
BIN = Path(sys.executable).parent  # the venv's bin: stunmeshctl, stunmeshd


def read_state() -> dict[str, Any]:
    try:
        state = json.loads(STATE.read_text())
    except FileNotFoundError:
        raise SystemExit("no lab is up; start one with `make lab`") from None
    if not _alive(int(state["pid"])):
        STATE.unlink(missing_ok=True)
        raise SystemExit("the lab's process is gone; start one with `make lab`")
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def up(nat_a: NatMode, nat_b: NatMode) -> int:
    if STATE.exists():
        with contextlib.suppress(SystemExit):
            read_state()
            print("a lab is already up (`make lab-down` stops it)", file=sys.stderr)
            return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with PrivateBus() as bus_a, PrivateBus() as bus_b:
        await asyncio.gather(bus_a.start_polkit(), bus_b.start_polkit())
        async with MeshLab(nat_a=nat_a, nat_b=nat_b, log_level="info") as mesh:
            buses = {"a": bus_a, "b": bus_b}
            for label, node in mesh.nodes.items():
                await mesh.start_daemon(node, "--bus", buses[label].address)
            # ready when both daemons are on their buses: a lab shell's first command works
            await asyncio.gather(
                *(bus.wait_for_name(BUS_NAME, timeout=20) for bus in buses.values())
            )
            hosts = {
                label.upper(): {
                    "net": str(node.site.host.path),
                    "mount": str(node.site.host.mount_ns),
                    "bus": buses[label].address,
                    "config": str(node.config_path),
                    "log": str(node.log_path),
                }
                for label, node in mesh.nodes.items()
            }
            STATE.parent.mkdir(parents=True, exist_ok=True)
            STATE.write_text(json.dumps({"pid": os.getpid(), "hosts": hosts}, indent=2))
            try:
                print(topology_picture(mesh.lab, store="OpenDHT (3 dhtnodes) :8080-8082"))
                print(instructions(hosts), flush=True)
                await stop.wait()
                print("\ntearing the lab down", flush=True)
            finally:
                STATE.unlink(missing_ok=True)
    return 0


def instructions(hosts: dict[str, dict[str, str]]) -> str:
    lines = ["", "The lab is up: both daemons run, each on its own system bus.", ""]
    for name, host in hosts.items():
        lines += [
            f"host{name}: make lab-shell HOST={name}",
            f"  config {host['config']}",
            f"  log    {host['log']}",
        ]
    lines += [
        "",
        "In a lab shell, try:",
        "  stunmeshctl show            stunmeshctl monitor      stunmeshctl refresh --wait",
        "  wg show wg0                 busctl --system tree io.github.stunmeshd.StunMesh1",
        "  ping 198.19.0.2  (A's view of B through the tunnel; B is 198.19.0.1 from B)",
        "",
        "Stop with Ctrl-C here or `make lab-down`.",
    ]
    return "\n".join(lines)


def shell_argv(host: dict[str, str], name: str, command: list[str]) -> list[str]:
    """nsenter into the host with the lab's environment; a login-like shell by default."""
    env = [
        f"DBUS_SYSTEM_BUS_ADDRESS={host['bus']}",
        f"PATH={BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        f"PS1=[lab host{name}] \\w# ",
        f"STUNMESHD_LAB_HOST=host{name}",
        f"HOME={os.environ.get('HOME', '/root')}",
        f"TERM={os.environ.get('TERM', 'dumb')}",
    ]
    argv = command or ["bash", "--norc", "-i"]
    return [
        "nsenter",
        f"--net={host['net']}",
        f"--mount={host['mount']}",
        "--",
        "env",
        "-i",
        *env,
        *argv,
    ]


def shell(name: str, command: list[str]) -> int:
    hosts = read_state()["hosts"]
    host = hosts.get(name.upper())
    if host is None:
        raise SystemExit(f"no host {name!r} in the lab; use one of {', '.join(sorted(hosts))}")
    argv = shell_argv(host, name.upper(), command)
    if not command:
        print(f"host{name.upper()}: {shlex.join(argv[:3])}; exit to leave", file=sys.stderr)
    os.execvp(argv[0], argv)
    return 1  # not reached


def down() -> int:
    state = read_state()
    os.kill(int(state["pid"]), signal.SIGTERM)
    print("the lab is going down (it takes a few seconds)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stunmeshd-lab", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("up", help="build the lab and keep it up until Ctrl-C or `down`")
    choices = [m.value for m in NatMode]
    start.add_argument("--nat-a", choices=choices, default=NatMode.PORT_CHANGING.value)
    start.add_argument("--nat-b", choices=choices, default=NatMode.ENDPOINT_INDEPENDENT.value)
    enter = sub.add_parser("shell", help="a shell (or COMMAND) inside host A or B")
    enter.add_argument("host", choices=["A", "B", "a", "b"], metavar="A|B")
    enter.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    sub.add_parser("down", help="stop the lab that `up` keeps")
    args = parser.parse_args(argv)
    if args.action == "up":
        return asyncio.run(up(NatMode(args.nat_a), NatMode(args.nat_b)))
    if args.action == "shell":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return shell(args.host, command)
    return down()


if __name__ == "__main__":
    sys.exit(main())
