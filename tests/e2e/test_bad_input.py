"""Hostile input through the real daemon: a STUN answer and stored records that can never be a
peer's endpoint are refused with the reason, never with a traceback, and never reach WireGuard.

Real wireguard-go, coturn-free STUN (a hostile responder of our own in the lab's wan, the
on-path attacker of the reliability run) and the lab's real OpenDHT, which keeps every value
anyone puts under a key.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from stunmeshd import crypto
from stunmeshd.lab.mesh import MeshLab, Node
from stunmeshd.lab.topology import WAN_A_IP
from stunmeshd.stores.opendht import OpenDHTStore

pytestmark = pytest.mark.root

HOSTILE_PORT = 3480
# Answers every Binding request with the right transaction id and a mapping that no peer can
# ever have: what an on-path attacker (or a broken server) can send.
HOSTILE_STUN = f"""
import socket
from stunmeshd.stun.codec import encode_binding_response, parse_message
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("{WAN_A_IP}", {HOSTILE_PORT}))
while True:
    data, source = sock.recvfrom(2048)
    request = parse_message(data)
    sock.sendto(encode_binding_response(request.transaction_id, ("255.255.255.255", 40000)), source)
"""


def assert_no_traceback(node: Node) -> None:
    text = node.log_text()
    assert "Traceback" not in text and "step failed" not in text, text[-3000:]
    assert "refresh failed" not in text, text[-3000:]


async def test_a_stun_mapping_of_255_255_255_255_is_refused_with_the_reason() -> None:
    async with MeshLab(stun_servers=[f"{WAN_A_IP}:{HOSTILE_PORT}"]) as mesh:
        await mesh.lab.spawn(mesh.lab.wan, sys.executable, "-c", HOSTILE_STUN, log_name="hostile")
        await mesh.lab.wait_udp_listening(mesh.lab.wan, HOSTILE_PORT)
        await mesh.start_daemon(mesh.a)
        entry = await mesh.wait_log(mesh.a, "device failed", timeout=20)
        assert entry["level"] == "warning"
        assert "unusable mapped address 255.255.255.255:40000" in entry["msg"]
        assert "broadcast" in entry["msg"]
        await asyncio.sleep(1.5)  # the retries that follow fail the same clean way
        assert_no_traceback(mesh.a)
        assert mesh.a.process is not None and mesh.a.process.returncode is None


async def put_values(mesh: MeshLab, key: str, values: list[str]) -> None:
    """Put values under ``key`` through the lab's proxies, as anyone on the DHT can."""

    async def put() -> None:
        store = OpenDHTStore("dht", endpoints=mesh.dht_urls, timeout=5.0)
        try:
            for value in values:
                await store.set(key, value)
        finally:
            await store.close()

    await mesh.a.site.host.call(put)


async def test_bad_records_are_refused_with_the_reason_and_a_good_one_still_applies() -> None:
    """A record nested 1,000 deep and one naming loopback: both refused, the reason logged,
    nothing set in WireGuard; a good record stored next to them is then used."""
    async with MeshLab() as mesh:
        a, b = mesh.a, mesh.b
        key = crypto.fetch_key(a.wg.public_key, b.wg.public_key)  # where A reads B's record

        def sealed(plaintext: bytes) -> str:  # B holds its key: these are B's own records
            return crypto.seal(plaintext, b.wg.private_key, a.wg.public_key)

        now_ms = int(time.time() * 1000)
        deep = b'{"ipv4":"203.0.113.20:51820","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
        loopback = json.dumps({"ipv4": "127.0.0.1:51820", "ts": now_ms}).encode()
        await put_values(mesh, key, [sealed(deep), sealed(loopback)])

        await mesh.start_daemon(a)
        entry = await mesh.wait_log(a, "record refused", timeout=20)
        assert "nested too deep" in entry["msg"]
        assert "127.0.0.1 is loopback" in entry["msg"]
        assert await a.peer_endpoint() == ""  # nothing reached WireGuard

        # a good (older) record next to the bad ones is tried and applied
        good = json.dumps({"ipv4": "203.0.113.20:51820", "ts": now_ms - 1000}).encode()
        await put_values(mesh, key, [sealed(good)])
        deadline = asyncio.get_running_loop().time() + 20
        while await a.peer_endpoint() != "203.0.113.20:51820":
            assert asyncio.get_running_loop().time() < deadline, a.log_text()[-3000:]
            await asyncio.sleep(0.1)
        assert_no_traceback(a)
        assert a.process is not None and a.process.returncode is None
