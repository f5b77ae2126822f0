"""The Device's port-mapping properties on a real bus: values, and PropertiesChanged.

The fields are set through ``portmap.device.properties``, the one function the engine's
seam uses, from the state machine's own ``Status`` values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dbus_fast.aio import MessageBus

from stunmeshd.bus import BusService
from stunmeshd.bus.names import DEVICE_IFACE, device_path
from stunmeshd.model import DeviceState
from stunmeshd.portmap.device import properties
from stunmeshd.portmap.machine import Mapping, Phase, Protocol, Status
from tests.bus.helpers import Signals, get_all
from tests.bus.standin import StandInEngine

pytestmark = pytest.mark.root


@pytest.fixture
async def with_device(engine: StandInEngine, service: BusService) -> AsyncIterator[None]:
    engine.add_device("wg0", state=DeviceState.READY, public_endpoints=("192.0.3.10:40000",))
    await asyncio.sleep(0.1)
    yield


async def test_mapping_properties_follow_the_mapper(
    with_device: None, engine: StandInEngine, client: MessageBus
) -> None:
    dev = engine.model.devices["wg0"]
    path = device_path(dev.id)
    before = await get_all(client, path, DEVICE_IFACE)
    assert (before["PortMapping"], before["PortMappingEndpoint"]) == ("", "")
    assert (before["PortMappingExpires"], before["EndpointSource"]) == (0, "stun")

    signals = await Signals(client).start()
    mapping = Mapping(Protocol.NATPMP, "192.0.3.10", 51820, 51820, 7200, 0.0)
    dev.update(
        **properties(Status(Phase.MAPPED, mapping, ""), 1_800_000_000.5),
        endpoint_source="port-mapping",
    )
    await signals.wait_for(lambda s: any(x[2] == "PropertiesChanged" for x in s))
    await asyncio.sleep(0.2)
    assert signals.members("PropertiesChanged", path) == [
        [
            DEVICE_IFACE,
            {
                "PortMapping": "natpmp",
                "PortMappingEndpoint": "192.0.3.10:51820",
                "PortMappingExpires": 1_800_000_000_500_000,
                "EndpointSource": "port-mapping",
            },
            [],
        ]
    ]

    # the router forgot it: no mapping, and the reason says why
    dev.update(**properties(Status(Phase.WAITING, None, "no router answered pcp/natpmp"), 0))
    await signals.wait_for(lambda s: len([x for x in s if x[2] == "PropertiesChanged"]) >= 2)
    after = await get_all(client, path, DEVICE_IFACE)
    assert (after["PortMapping"], after["PortMappingEndpoint"]) == ("", "")
    assert after["PortMappingExpires"] == 0
    assert after["PortMappingReason"] == "no router answered pcp/natpmp"
