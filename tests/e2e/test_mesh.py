"""End to end: two stunmeshd daemons behind NATs in the lab connect by themselves.

Real wireguard-go, coturn, nftables NAT and the directory store; the daemons are started at
the same moment, as two hosts booting together would be.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from stunmeshd import crypto
from stunmeshd.lab.mesh import DIRSTORE, MeshLab
from stunmeshd.lab.topology import WAN_A_IP, WAN_B_IP, NatMode, lab_owners

pytestmark = pytest.mark.root


@pytest.mark.parametrize("store", ["opendht", "dir"])
async def test_two_hosts_behind_nat_connect_and_ping(store: str) -> None:
    """(a) Both NATs endpoint-independent, A's changing the port; through a real OpenDHT
    network of dhtnodes in the wan, and through the directory store plugin."""
    async with MeshLab(
        nat_a=NatMode.PORT_CHANGING, nat_b=NatMode.ENDPOINT_INDEPENDENT, store=store
    ) as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=20)
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)
        # each side's configured endpoint is the other's public mapping (A's NAT moved the port)
        assert await mesh.a.peer_endpoint() == "203.0.113.20:51820"
        assert await mesh.b.peer_endpoint() == "198.51.100.10:40000"
        entry = await mesh.wait_log(mesh.a, "public endpoint")
        assert "198.51.100.10:40000" in entry["msg"]


async def test_symmetric_nat_is_detected_and_explained() -> None:
    """(b) Behind a symmetric NAT the tunnel cannot form: no crash, and the log says why."""
    async with MeshLab(nat_a=NatMode.SYMMETRIC, nat_b=NatMode.ENDPOINT_INDEPENDENT) as mesh:
        await mesh.start_daemons()
        warning = await mesh.wait_log(mesh.a, "NAT mapping is address-and-port-dependent")
        assert warning["level"] == "warning"
        # after the grace period the peer is reported as not connected, with the reason
        reason = await mesh.wait_log(mesh.a, "no handshake", timeout=40)
        assert "symmetric" in reason["msg"]
        assert mesh.a.process is not None and mesh.a.process.returncode is None
        assert mesh.b.process is not None and mesh.b.process.returncode is None


async def test_discovery_falls_back_to_second_stun_server() -> None:
    """(c) The first STUN server is down: discovery falls back to the second."""
    dead = f"{WAN_A_IP}:3999"  # nothing listens there
    async with MeshLab(stun_servers=[dead, f"{WAN_B_IP}:3478"]) as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=30)
        assert await mesh.a.peer_endpoint() == "203.0.113.20:51820"


FLAKY_STORE = """#!/bin/sh
# A store that fails, hangs or works, as the mode file says.
mode=$(cat "{mode}")
case "$mode" in
  fail) echo "backend unavailable (test)" >&2; exit 3 ;;
  hang) sleep 600 ;;
  *) exec "{dirstore}" "{records}" ;;
esac
"""


async def test_store_failing_then_hanging_then_recovering() -> None:
    """(d) The daemons keep running through a failing and a hung store, then connect."""
    async with MeshLab(store="dir") as mesh:
        mode = mesh.lab.workdir / "store-mode"
        mode.write_text("fail")
        script = mesh.lab.workdir / "flaky-store.sh"
        script.write_text(FLAKY_STORE.format(mode=mode, dirstore=DIRSTORE, records=mesh.store_dir))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        for node, other in ((mesh.a, mesh.b), (mesh.b, mesh.a)):
            config = mesh.config_for(node, other)
            config["plugins"]["lab"] = {"type": "shell", "command": str(script), "timeout": "1s"}
            mesh.write_config(node, config)
        await mesh.start_daemons()
        await mesh.wait_log(mesh.a, "backend unavailable (test)")
        mode.write_text("hang")
        await mesh.wait_log(mesh.a, "timed out", timeout=30)
        for node in mesh.nodes.values():
            assert node.process is not None and node.process.returncode is None
        assert await mesh.a.latest_handshake() == 0
        mode.write_text("ok")
        await mesh.wait_handshake(timeout=60)
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip, count=3)


async def test_reflected_and_replayed_records_are_refused() -> None:
    """(e) A replayed and a reflected record are refused; the good endpoint stays."""
    async with MeshLab(refresh_interval="2s", store="dir") as mesh:
        await mesh.start_daemons()
        await mesh.wait_handshake(timeout=20)
        good = await mesh.a.peer_endpoint()
        fetch_slot = mesh.record_path(mesh.b, mesh.a)  # what A reads
        old_record = fetch_slot.read_text()
        # B republishes every cycle (a newer ts); let A accept a newer one, then stop B so
        # nothing overwrites what the attacker writes into the store
        await _wait_for_newer_record(fetch_slot, old_record)
        await asyncio.sleep(2.5)
        await mesh.stop_daemon(mesh.b)

        fetch_slot.write_text(old_record)  # replay
        entry = await mesh.wait_log(mesh.a, "replayed", timeout=15)
        assert entry["level"] == "warning"
        assert await mesh.a.peer_endpoint() == good

        fetch_slot.write_text(mesh.record_path(mesh.a, mesh.b).read_text())  # reflection
        await mesh.wait_log(mesh.a, "reflected", timeout=15)
        assert await mesh.a.peer_endpoint() == good
        assert await mesh.lab.ping(mesh.a.site, mesh.b.wg.tunnel_ip)
        assert mesh.a.process is not None and mesh.a.process.returncode is None


async def _wait_for_newer_record(path: Path, old: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while path.read_text() == old:
        assert loop.time() < deadline, "B never republished"
        await asyncio.sleep(0.1)


async def test_oneshot_exits_zero_when_peers_connect() -> None:
    """(f) --oneshot: both exit 0 when each gets its peer's endpoint."""
    async with MeshLab() as mesh:
        await mesh.start_daemons("--oneshot")
        codes = await asyncio.gather(
            *(
                asyncio.wait_for(n.process.wait(), 40)  # type: ignore[union-attr]
                for n in mesh.nodes.values()
            )
        )
        assert codes == [0, 0], [n.log_text()[-2000:] for n in mesh.nodes.values()]
        assert await mesh.a.peer_endpoint() == "203.0.113.20:51820"


async def test_oneshot_fails_when_a_record_never_appears() -> None:
    """(f) --oneshot exits non-zero when the peer never publishes."""
    async with MeshLab() as mesh:
        proc = await mesh.start_daemon(mesh.a, "--oneshot", "--oneshot-wait", "3")
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 1
        assert "not every peer got an endpoint" in mesh.a.log_text()


async def test_stunmesh_go_record_without_extra_fields_is_accepted() -> None:
    """(g) A record exactly as stunmesh-go writes it (the wire-format vector) is applied."""
    priv_a, priv_b = bytes([1]) * 32, bytes([2]) * 32
    vector = (
        "000102030405060708090a0b0c0d0e0f1011121314151617ebd1a9e37be97778c96db628161e6f"
        "4899edeab3ec05c40c9b6448f4e2ac29c9eae052d19982fa4a3370795f"
    )
    async with MeshLab(keys={"a": priv_a, "b": priv_b}, store="dir") as mesh:
        # A (stunmesh-go) published {"ipv4":"203.0.113.7:51820"} for B: B reads it
        assert (
            crypto.publish_key(mesh.a.wg.public_key, mesh.b.wg.public_key)
            == "12850bc1c76f60f1b38169066b58097a94c7c366"
        )
        mesh.record_path(mesh.a, mesh.b).write_text(vector)
        proc = await mesh.start_daemon(mesh.b, "--oneshot", "--oneshot-wait", "5")
        assert await asyncio.wait_for(proc.wait(), 30) == 0, mesh.b.log_text()[-2000:]
        assert await mesh.b.peer_endpoint() == "203.0.113.7:51820"


def test_lab_leaves_nothing_behind() -> None:
    """Every lab the tests above built is gone (clean-up also ran on failures)."""
    mine = [lab_id for lab_id, pid in lab_owners().items() if pid == os.getpid()]
    assert mine == []
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in names if any(n.startswith(f"smd{i}-") for i in mine)]
