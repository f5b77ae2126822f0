"""The UAPI backend against a real wireguard-go in a lab host, checked against ``wg show``.

wireguard-go runs in its own network and mount namespace (the lab host); its UAPI socket is
reached from here through /proc/<pid>/root, exactly as the daemon's tests and demo do.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nacl.public import PrivateKey

from stunmeshd.errors import DeviceNotFound
from stunmeshd.lab.topology import Lab, WireGuard
from stunmeshd.wireguard import NetlinkBackend, UapiBackend, backend_for

pytestmark = pytest.mark.root


@dataclass
class Bed:
    lab: Lab
    wg: WireGuard
    backend: UapiBackend
    with_endpoint: bytes  # a peer added with an endpoint
    without_endpoint: bytes  # a peer added without one


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def new_public_key() -> bytes:
    return bytes(PrivateKey.generate().public_key)


async def wg_peers(wg: WireGuard) -> dict[bytes, list[str]]:
    """``wg show <if> dump`` peer lines by raw public key: psk, endpoint, ips, hs, rx, tx, ka."""
    lines = (await wg.wg("show", wg.ifname, "dump")).splitlines()[1:]
    return {base64.b64decode(f[0]): f[1:] for f in (line.split("\t") for line in lines)}


@pytest.fixture
async def bed() -> AsyncIterator[Bed]:
    async with Lab(coturn=False) as lab:
        wg = await lab.start_wireguard(lab.a, listen_port=51820)
        with_endpoint, without_endpoint = new_public_key(), new_public_key()
        await wg.add_peer(with_endpoint, "198.19.0.2/32", "203.0.113.20:51820")
        await wg.add_peer(without_endpoint, "198.19.0.3/32")
        await wg.wg("set", wg.ifname, "fwmark", "0x42")
        backend = backend_for(wg.ifname, uapi_dir=wg.uapi_dir)
        assert isinstance(backend, UapiBackend)
        yield Bed(lab, wg, backend, with_endpoint, without_endpoint)


async def test_read_device_matches_wg_show(bed: Bed) -> None:
    assert bed.backend.kind == "wireguard-go"
    info = await bed.backend.read_device("wg0")

    private, public, port, fwmark = (
        (await bed.wg.wg("show", "wg0", "dump")).splitlines()[0].split("\t")
    )
    # wireguard-go stores the key clamped (RFC 7748); wg show and we both report that form
    assert b64(info.private_key) == private
    assert bytes(PrivateKey(info.private_key).public_key) == bed.wg.public_key
    assert b64(info.public_key) == public == b64(bed.wg.public_key)
    assert info.listen_port == int(port) == 51820
    assert info.fwmark == int(fwmark, 16) == 0x42

    assert (
        set(info.peers)
        == set(await wg_peers(bed.wg))
        == {
            bed.with_endpoint,
            bed.without_endpoint,
        }
    )
    assert info.peers[bed.with_endpoint].endpoint == "203.0.113.20:51820"
    assert info.peers[bed.without_endpoint].endpoint is None
    assert info.peers[bed.with_endpoint].persistent_keepalive == 0
    assert info.peers[bed.with_endpoint].latest_handshake == 0.0


async def test_set_endpoint_updates_only_existing_peers(bed: Bed) -> None:
    await bed.backend.set_endpoint("wg0", bed.without_endpoint, "203.0.113.30:40000")
    await bed.backend.set_endpoint("wg0", bed.with_endpoint, "[2001:DB8:0::7]:51821")
    stranger = new_public_key()
    await bed.backend.set_endpoint("wg0", stranger, "203.0.113.40:51820")  # must not create it

    shown = await wg_peers(bed.wg)
    assert set(shown) == {bed.with_endpoint, bed.without_endpoint}
    assert shown[bed.without_endpoint][1] == "203.0.113.30:40000"
    assert shown[bed.with_endpoint][1] == "[2001:db8::7]:51821"
    assert shown[bed.with_endpoint][2] == "198.19.0.2/32"  # the rest of the peer is untouched

    info = await bed.backend.read_device("wg0")
    assert info.peers[bed.with_endpoint].endpoint == "[2001:db8::7]:51821"
    assert stranger not in info.peers


async def test_keepalive_kick_turns_keepalive_on_and_sends(bed: Bed) -> None:
    peer = bed.without_endpoint
    await bed.backend.set_endpoint("wg0", peer, "203.0.113.30:40000")
    before = (await bed.backend.read_device("wg0")).peers[peer]
    assert (before.persistent_keepalive, before.tx_bytes) == (0, 0)

    await bed.backend.set_endpoint("wg0", peer, "203.0.113.30:40000", keepalive=25)

    assert (await wg_peers(bed.wg))[peer][6] == "25"
    # turning keepalive on makes wireguard-go start a handshake at once: bytes go out
    after = before
    for _ in range(100):  # bounded wait, no timing asserted
        after = (await bed.backend.read_device("wg0")).peers[peer]
        if after.tx_bytes:
            break
        await asyncio.sleep(0.05)
    assert after.persistent_keepalive == 25
    assert after.tx_bytes > 0


async def test_selection_and_vanishing_device(bed: Bed) -> None:
    assert isinstance(backend_for("wg1", uapi_dir=bed.wg.uapi_dir), NetlinkBackend)
    with pytest.raises(DeviceNotFound):
        await bed.backend.read_device("wg1")
    await bed.wg.stop()
    with pytest.raises(DeviceNotFound):
        await bed.backend.read_device("wg0")
    with pytest.raises(DeviceNotFound):
        await bed.backend.set_endpoint("wg0", bed.with_endpoint, "203.0.113.20:51820")


async def test_reset_peer_recreates_it_with_the_same_config(bed: Bed) -> None:
    """A never-connected peer is re-created: same allowed IPs and preshared key, the new
    endpoint, keepalive on — and WireGuard sends for it at once."""
    wg, key = bed.wg, bed.without_endpoint
    psk = bytes(range(32))
    await wg.wg(
        "set",
        wg.ifname,
        "peer",
        b64(key),
        "allowed-ips",
        "198.19.0.77/32,198.19.1.0/24",
        "preshared-key",
        "/dev/stdin",
        input=(b64(psk) + "\n").encode(),
    )
    before = (await bed.backend.read_device(wg.ifname)).peers[key]
    assert before.preshared_key == psk and before.latest_handshake == 0
    assert "psk" not in repr(before) and psk.hex() not in repr(before)
    await bed.backend.reset_peer(wg.ifname, before, "203.0.113.20:40000", 25)
    after = (await bed.backend.read_device(wg.ifname)).peers[key]
    assert after.endpoint == "203.0.113.20:40000"
    assert after.persistent_keepalive == 25
    assert (
        sorted(after.allowed_ips)
        == sorted(before.allowed_ips)
        == ["198.19.0.77/32", "198.19.1.0/24"]
    )
    assert after.preshared_key == psk
    assert (await wg_peers(wg))[key]  # still listed by `wg`, with its allowed IPs
    for _ in range(50):  # the kick makes the new peer send a handshake initiation at once
        if (await bed.backend.read_device(wg.ifname)).peers[key].tx_bytes > 0:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the re-created peer sent nothing")
