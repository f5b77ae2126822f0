"""One interface with 1,000 configured peers: the time of one full cycle and peak RSS.

One peer is real (hostB's WireGuard, whose daemon also runs), 999 are generated keys that are
on hostA's device and in its config but never publish: the full cycle publishes 1,000 records
and fetches 1,000 through the directory store (a shell plugin, one process per operation).
Targets: cycle ≤ 5 s, RSS ≤ 80 MB. Last line: ``peers=1000 cycle_s=… rss_mb=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacl.public import PrivateKey

from stunmeshd.lab.mesh import MeshLab


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


async def main(peers: int) -> None:
    async with MeshLab(log_level="info", store="dir") as mesh:
        a, b = mesh.a, mesh.b
        generated = [bytes(PrivateKey.generate().public_key) for _ in range(peers - 1)]
        conf = mesh.lab.workdir / "extra-peers.conf"
        lines = []
        for i, key in enumerate(generated):
            lines += [
                "[Peer]",
                f"PublicKey = {base64.b64encode(key).decode()}",
                f"AllowedIPs = 198.18.{100 + (i >> 8)}.{i & 255}/32",
                "",
            ]
        conf.write_text("\n".join(lines))
        await a.site.host.run("wg", "addconf", a.wg.ifname, str(conf))
        config = mesh.config_for(a, b)
        peer_map = config["interfaces"][a.wg.ifname]["peers"]
        for i, key in enumerate(generated):
            peer_map[f"gen{i:04d}"] = {
                "public_key": base64.b64encode(key).decode(),
                "plugin": "lab",
            }
        mesh.write_config(a, config)
        await mesh.start_daemons()
        entry = await mesh.wait_log(a, "refresh done", timeout=120)
        took = float(re.search(r"took=([\d.]+)s", entry["msg"]).group(1))
        assert f"peers={peers}" in entry["msg"], entry["msg"]
        await mesh.wait_handshake(timeout=30)  # the real peer still connects
        await asyncio.sleep(3)  # let the generated peers' backoff re-fetches run a while
        assert a.process is not None
        rss = peak_rss_mb(a.process.pid)
        print(f"cycle {took:.2f} s for {peers} peers; daemon peak RSS {rss:.1f} MB")
        print(f"peers={peers} cycle_s={took:.3f} rss_mb={rss:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1000)
    asyncio.run(main(parser.parse_args().peers))
