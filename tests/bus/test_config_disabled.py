"""Peers the configuration disables, with the real daemon, real wireguard-go and a private
system bus: the daemon runs the file stunmesh-go would run, the good peer connects, and each
skipped peer is a Peer object in state DISABLED whose LastError says why (issue 12, part 1)."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from nacl.public import PrivateKey

from stunmeshd.bus.names import BUS_NAME, DEVICE_IFACE, PEER_IFACE
from stunmeshd.model import PeerState
from tests.bus.busmesh import BusMesh, by_iface, wait_objects

pytestmark = pytest.mark.root

PLACEHOLDER = "<PEER_B_PUBLIC_KEY_BASE64>"  # stunmesh-go's README example


async def test_disabled_peers_are_shown_and_the_good_one_connects(bus_mesh: BusMesh) -> None:
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    a, b = mesh.a, mesh.b
    stranger = _b64(PrivateKey.generate().public_key.encode())
    config = bus_mesh.config_a()
    ((_ifname, iface),) = config["interfaces"].items()
    ((good_label, good),) = iface["peers"].items()
    iface["peers"]["placeholder"] = {"public_key": PLACEHOLDER, "plugin": "lab"}
    iface["peers"]["noplugin"] = {"public_key": stranger, "plugin": "nope"}
    iface["peers"]["twin"] = {"public_key": good["public_key"], "plugin": "lab"}
    mesh.write_config(a, config)
    client = await bus_a.connect()
    try:
        await bus_mesh.start(b, bus_mesh.bus_b)
        await bus_mesh.start(a, bus_a)
        await bus_a.wait_for_name(BUS_NAME, timeout=20)

        def settled(objects: dict[str, Any]) -> bool:
            peers = {v["Name"]: v for v in by_iface(objects, PEER_IFACE).values()}
            return len(peers) == 4 and peers[good_label]["State"] == PeerState.CONNECTED

        objects = await wait_objects(client, settled, timeout=60)
        peers = {v["Name"]: (p, v) for p, v in by_iface(objects, PEER_IFACE).items()}
        for label in ("placeholder", "noplugin", "twin"):
            assert peers[label][1]["State"] == PeerState.DISABLED, peers[label]
            assert peers[label][1]["Endpoint"] == ""
        assert "public_key is not valid base64" in peers["placeholder"][1]["LastError"]
        assert peers["placeholder"][1]["PublicKey"] == ""  # the text is never echoed
        assert 'names plugin "nope"' in peers["noplugin"][1]["LastError"]
        assert peers["noplugin"][1]["PublicKey"] == stranger
        assert f'same public key as peer "{good_label}"' in peers["twin"][1]["LastError"]
        assert peers[good_label][1]["LastError"] == ""
        (device,) = by_iface(objects, DEVICE_IFACE).values()
        assert sorted(device["Peers"]) == sorted(path for path, _ in peers.values())
        log = a.log_text()
        assert "interfaces.wg0.peers.placeholder: peer disabled: public_key is not" in log
        assert PLACEHOLDER not in log
    finally:
        client.disconnect()


async def test_reload_disables_and_reenables_peers(bus_mesh: BusMesh) -> None:
    """SIGHUP with a file that disables the running peer (its key pasted wrong): the same peer
    is shown DISABLED, with a warning in the log; the next reload with the key fixed runs it
    again and the disabled object is gone."""
    mesh, bus_a = bus_mesh.mesh, bus_mesh.bus_a
    a = mesh.a
    config = bus_mesh.config_a()
    ((_ifname, iface),) = config["interfaces"].items()
    ((label, good),) = iface["peers"].items()
    client = await bus_a.connect()
    try:
        await bus_mesh.start(a, bus_a)
        await bus_a.wait_for_name(BUS_NAME, timeout=20)
        await wait_objects(client, lambda o: len(by_iface(o, PEER_IFACE)) == 1)
        assert a.process is not None

        broken = {**good, "public_key": good["public_key"].rstrip("=")}
        iface["peers"][label] = broken
        mesh.write_config(a, config)
        a.process.send_signal(signal.SIGHUP)

        def states(objects: dict[str, Any]) -> list[int]:
            return [v["State"] for v in by_iface(objects, PEER_IFACE).values()]

        objects = await wait_objects(client, lambda o: states(o) == [PeerState.DISABLED])
        (peer,) = by_iface(objects, PEER_IFACE).values()
        assert "lacks its '=' padding" in peer["LastError"] and peer["Name"] == label
        await mesh.wait_log(a, f"peers.{label}: peer disabled")

        iface["peers"][label] = good
        mesh.write_config(a, config)
        a.process.send_signal(signal.SIGHUP)
        objects = await wait_objects(
            client,
            lambda o: len(states(o)) == 1 and states(o)[0] != PeerState.DISABLED,
        )
        (peer,) = by_iface(objects, PEER_IFACE).values()
        assert peer["PublicKey"] == good["public_key"] and peer["LastError"] == ""
    finally:
        client.disconnect()


def _b64(key: bytes) -> str:
    import base64

    return base64.b64encode(key).decode()
