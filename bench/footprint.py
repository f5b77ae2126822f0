"""What the daemon and the client cost: RSS of a real daemon, stunmeshctl's import time.

Two lab hosts connected by their daemons; hostA's daemon has 1 peer (hostB), then, in a new
lab, 10 (hostB plus 9 generated keys on its device and in its config that never publish).
hostA's daemon runs as deployed: on a system bus (a private dbus-daemon), its objects exported.
RSS (VmRSS) is read ``--seconds`` after the daemon started. The store is the lab's OpenDHT
(``--store dir``: the directory store, a shell plugin, which needs no HTTP stack).
``port_mapping`` is at its default (``auto``): the probe, SSDP search included, runs against
natA, which has no mapping router (aiohttp loads only once a gateway device answers). The package
is byte-compiled first, as ``make install`` does (a daemon compiling its modules from source
on every start holds ~2 MB more). ``ctl_import_s`` is the median over 5 runs of the import
time ``python -X importtime -m stunmeshd.ctl --help`` reports (its top-level imports from
the first of stunmeshd's on, summed: what runs before, site and encodings, is the interpreter's).
Targets: rss_1peer_mb ≤ 30, rss_10peers_mb ≤ 40.
Last line: ``rss_1peer_mb=… rss_10peers_mb=… ctl_import_s=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacl.public import PrivateKey

from stunmeshd.lab.mesh import MeshLab
from stunmeshd.lab.sysbus import PrivateBus


def status_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    assert match, f"no {field} for {pid}"
    return int(match.group(1)) / 1024


async def daemon_rss(peers: int, seconds: float, store: str) -> float:
    async with PrivateBus() as bus, MeshLab(log_level="info", store=store) as mesh:
        a, b = mesh.a, mesh.b
        config = mesh.config_for(a, b)
        if peers > 1:
            generated = [bytes(PrivateKey.generate().public_key) for _ in range(peers - 1)]
            conf = mesh.lab.workdir / "extra-peers.conf"
            lines: list[str] = []
            for i, key in enumerate(generated):
                lines += [
                    "[Peer]",
                    f"PublicKey = {base64.b64encode(key).decode()}",
                    f"AllowedIPs = 198.18.100.{i + 1}/32",
                    "",
                ]
            conf.write_text("\n".join(lines))
            await a.site.host.run("wg", "addconf", a.wg.ifname, str(conf))
            peer_map = config["interfaces"][a.wg.ifname]["peers"]
            for i, key in enumerate(generated):
                peer_map[f"gen{i:02d}"] = {
                    "public_key": base64.b64encode(key).decode(),
                    "plugin": "lab",
                }
        mesh.write_config(a, config)
        started = asyncio.get_running_loop().time()
        await asyncio.gather(mesh.start_daemon(a, "--bus", bus.address), mesh.start_daemon(b))
        await mesh.wait_handshake(timeout=30)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, started + seconds - loop.time()))
        proc = a.process
        assert proc is not None and proc.returncode is None, "the daemon died"
        assert "running without D-Bus" not in a.log_text(), "the daemon is not on the bus"
        rss, peak = status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "VmHWM")
    print(
        f"{peers} peer(s), {store} store, after {seconds:.0f} s: RSS {rss:.1f} MB (peak {peak:.1f})"
    )
    return rss


def ctl_import_s(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "stunmeshd.ctl", "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        total_us, ours = 0, False
        for line in out.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
            if match:  # a top-level import; the interpreter's own (site, ...) come first
                ours = ours or match.group(2).startswith("stunmeshd")
                total_us += int(match.group(1)) if ours else 0
        times.append(total_us / 1e6)
    return statistics.median(times)


async def main(seconds: float, store: str) -> None:
    one = await daemon_rss(1, seconds, store)
    ten = await daemon_rss(10, seconds, store)
    ctl = ctl_import_s()
    print(f"rss_1peer_mb={one:.1f} rss_10peers_mb={ten:.1f} ctl_import_s={ctl:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--store", choices=("opendht", "dir"), default="opendht")
    args = parser.parse_args()
    package = Path(__file__).resolve().parents[1] / "stunmeshd"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    asyncio.run(main(args.seconds, args.store))
