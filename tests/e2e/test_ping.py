"""The ping monitor's ICMP echo against the real kernel, in a namespace of the test's own."""

from __future__ import annotations

import secrets

import pytest

from stunmeshd.health import ping
from stunmeshd.lab.netns import Namespace

pytestmark = pytest.mark.root


async def test_ping_answers_and_silence() -> None:
    ns = Namespace(f"smdpg{secrets.token_hex(3)}")
    await ns.create()
    try:
        await ns.run("ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        await ns.run("ip", "addr", "add", "198.18.7.1/24", "dev", "p0")
        await ns.run("ip", "link", "set", "p0", "up")
        await ns.run("ip", "link", "set", "p1", "up")
        assert await ns.call(ping, "127.0.0.1", 1.0) is True
        assert await ns.call(ping, "::1", 1.0) is True
        assert await ns.call(ping, "198.18.7.9", 0.3) is False  # nobody there
    finally:
        await ns.delete()
