"""NetWatch against the real kernel, inside a network namespace the test creates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stunmeshd.lab.netns import Namespace
from stunmeshd.netwatch import NetWatch

pytestmark = pytest.mark.root


@pytest.fixture
async def ns() -> AsyncIterator[Namespace]:
    import secrets

    space = Namespace(f"smdnw{secrets.token_hex(3)}")
    await space.create()
    try:
        yield space
    finally:
        await space.delete()


async def watch_while(
    ns: Namespace, action: str, settle: float = 0.5
) -> tuple[list[tuple[str, bool]], list[str]]:
    """Run a NetWatch inside ``ns`` while ``action`` (a shell script) runs there."""
    links: list[tuple[str, bool]] = []
    changes: list[str] = []

    async def inside() -> None:
        watch = NetWatch(
            lambda name, present: links.append((name, present)),
            changes.append,
            ignore=lambda: {"wg0"},
        )
        await watch.start()
        try:
            proc = await asyncio.create_subprocess_exec("sh", "-ec", action)
            assert await proc.wait() == 0
            await asyncio.sleep(settle)
        finally:
            await watch.close()

    await ns.call(inside)
    return links, changes


async def test_links_appearing_and_vanishing_are_reported(ns: Namespace) -> None:
    links, _ = await watch_while(
        ns, "ip link add wg0 type veth peer name x0; ip link set wg0 up; ip link del wg0"
    )
    assert ("wg0", True) in links and ("wg0", False) in links
    assert links.index(("wg0", True)) < links.index(("wg0", False))
    assert links.count(("wg0", True)) == 1  # "link up" is not a new device


async def test_no_event_is_lost_in_a_burst(ns: Namespace) -> None:
    script = "for i in $(seq 1 150); do ip link add a$i type veth peer name b$i; done"
    links, _ = await watch_while(ns, script, settle=1.0)
    created = {name for name, present in links if present}
    assert {f"a{i}" for i in range(1, 151)} <= created
    assert {f"b{i}" for i in range(1, 151)} <= created


async def test_address_and_default_route_changes_are_reported(ns: Namespace) -> None:
    _, changes = await watch_while(
        ns,
        (
            "ip link add up0 type veth peer name up1; ip link set up0 up; ip link set up1 up; "
            "ip addr add 198.18.9.2/24 dev up0; ip route add default via 198.18.9.1"
        ),
    )
    assert any("address added on up0" in c for c in changes)
    assert any("default route added" in c for c in changes)


async def test_address_changes_on_ignored_interfaces_are_not(ns: Namespace) -> None:
    _, changes = await watch_while(
        ns, ("ip link add wg0 type veth peer name x0; ip addr add 198.19.0.1/24 dev wg0")
    )
    assert not any("wg0" in c for c in changes)
