"""The model batches state changes per loop turn into one event per object."""

from __future__ import annotations

import asyncio

from stunmeshd.model import (
    Changed,
    DeviceAdded,
    DeviceRemoved,
    Event,
    Model,
    PeerRemoved,
    PeerState,
)


async def test_changes_in_one_turn_become_one_event_per_object() -> None:
    model = Model()
    events: list[Event] = []
    model.subscribe(events.append)
    device = model.add_device("wg0")
    peer = model.add_peer(device, name="b", public_key="k", store="s")
    events.clear()
    peer.update(state=PeerState.RESOLVED, discovered_endpoint="203.0.113.7:51820")
    peer.update(state=PeerState.APPLIED, endpoint="203.0.113.7:51820")
    device.update(public_endpoints=("198.51.100.10:40000",))
    await asyncio.sleep(0)
    changed = [e for e in events if isinstance(e, Changed)]
    assert len(changed) == 2
    by_obj = {id(e.obj): e.changes for e in changed}
    assert by_obj[id(peer)] == {
        "state": PeerState.APPLIED,
        "discovered_endpoint": "203.0.113.7:51820",
        "endpoint": "203.0.113.7:51820",
    }


async def test_a_flap_back_to_the_old_value_is_no_change() -> None:
    model = Model()
    events: list[Event] = []
    device = model.add_device("wg0")
    peer = model.add_peer(device, name="b", public_key="k", store="s", state=PeerState.APPLIED)
    model.subscribe(events.append)
    peer.update(state=PeerState.RESOLVED)
    peer.update(state=PeerState.APPLIED)
    await asyncio.sleep(0)
    assert not [e for e in events if isinstance(e, Changed)]


async def test_numbers_are_never_reused_and_signals_follow_their_changes() -> None:
    model = Model()
    events: list[Event] = []
    model.subscribe(events.append)
    first = model.add_device("wg0")
    first.update(listen_port=51820)
    model.remove_device("wg0")  # a change to an object that is gone is not announced
    second = model.add_device("wg0")
    second.update(listen_port=51821)
    await asyncio.sleep(0)
    assert second.id != first.id
    kinds = [type(e) for e in events]
    assert kinds == [DeviceAdded, DeviceRemoved, DeviceAdded, Changed]


def test_removing_a_device_removes_its_peers_first() -> None:
    model = Model()
    events: list[Event] = []
    device = model.add_device("wg0")
    model.add_peer(device, name="b", public_key="k", store="s")
    model.subscribe(events.append)
    model.remove_device("wg0")
    assert [type(e) for e in events] == [PeerRemoved, DeviceRemoved]
