"""Device and peer state: the vocabulary shared by the engine (which writes it) and the bus.

State objects record which fields changed; the model batches all changes made in one turn of
the event loop into one ``Changed`` event per object, so the bus can send one
``PropertiesChanged`` per object per engine step without the engine knowing about D-Bus.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from typing import Any

log = logging.getLogger(__name__)


class ManagerState(IntEnum):
    UNKNOWN = 0
    STARTING = 1
    RUNNING = 2
    DEGRADED = 3  # a device is failing
    STOPPING = 4


class DeviceState(IntEnum):
    UNKNOWN = 0
    IDLE = 1
    DISCOVERING = 2
    PUBLISHING = 3
    READY = 4
    FAILED = 5


class PeerState(IntEnum):
    UNKNOWN = 0
    WAITING = 1  # no record yet
    RESOLVED = 2  # record opened
    APPLIED = 3  # endpoint set in WireGuard
    CONNECTED = 4  # recent handshake
    FAILED = 5
    # Configured peers the daemon does not work on; LastError says why. Each such state is one
    # line here, numbered from NOT_ON_DEVICE up (``inactive`` covers them all).
    NOT_ON_DEVICE = 6  # the WireGuard interface has no such peer (yet)

    @property
    def inactive(self) -> bool:
        """Nothing is fetched, published or applied for a peer in this state."""
        return self >= PeerState.NOT_ON_DEVICE


class NatMapping(StrEnum):
    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    UNKNOWN = "unknown"

    @property
    def dependent(self) -> bool:
        """Behind a dependent mapping a peer cannot reach us through the STUN-discovered port."""
        return self in (NatMapping.ADDRESS_DEPENDENT, NatMapping.ADDRESS_AND_PORT_DEPENDENT)


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changed:
    """Fields of one state object changed (field name -> new value)."""

    obj: DeviceStatus | PeerStatus
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    device: DeviceStatus


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    device: DeviceStatus


@dataclass(frozen=True, slots=True)
class PeerAdded:
    peer: PeerStatus


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    peer: PeerStatus


@dataclass(frozen=True, slots=True)
class RefreshCompleted:
    device: DeviceStatus
    success: bool
    error: str


@dataclass(frozen=True, slots=True)
class EndpointChanged:
    device: DeviceStatus
    endpoints: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ManagerChanged:
    changes: dict[str, Any]


Event = (
    Changed
    | DeviceAdded
    | DeviceRemoved
    | PeerAdded
    | PeerRemoved
    | RefreshCompleted
    | EndpointChanged
    | ManagerChanged
)
Listener = Callable[[Event], None]


# ---- state objects ------------------------------------------------------------------------


class _Tracked:
    """Base of state objects: ``update(**fields)`` records what really changed."""

    _model: Model | None
    _dirty: dict[str, Any]

    def update(self, **changes: Any) -> None:
        for name, value in changes.items():
            current = getattr(self, name)
            if current != value:
                self._dirty.setdefault(name, current)  # the value clients last saw
                object.__setattr__(self, name, value)
        if self._dirty and self._model is not None:
            self._model._mark_dirty(self)

    def take_changes(self) -> dict[str, Any]:
        """Fields whose value differs from the last batch (a flap back and forth is none)."""
        before, self._dirty = self._dirty, {}
        return {
            name: getattr(self, name) for name, old in before.items() if getattr(self, name) != old
        }

    def snapshot(self) -> dict[str, Any]:
        """Public fields and their values (private ones start with ``_``)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
            if not f.name.startswith("_")
        }


@dataclass(eq=False)
class PeerStatus(_Tracked):
    """What the daemon knows about one peer of one device."""

    id: int
    device_id: int
    interface: str
    name: str  # label in the config
    public_key: str  # base64
    store: str  # plugin instance name
    protocol: str = "ipv4"
    state: PeerState = PeerState.UNKNOWN
    last_error: str = ""
    endpoint: str = ""  # configured in WireGuard now
    discovered_endpoint: str = ""  # last opened from the store
    latest_handshake: int = 0  # µs since the epoch
    last_update: int = 0  # µs since the epoch: last time a record was applied
    rx_bytes: int = 0
    tx_bytes: int = 0
    _model: Model | None = field(default=None, repr=False, compare=False)
    _dirty: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(eq=False)
class DeviceStatus(_Tracked):
    """What the daemon knows about one managed WireGuard interface."""

    id: int
    interface: str
    ifindex: int = 0
    backend: str = ""
    public_key: str = ""  # base64, as `wg` prints it
    listen_port: int = 0
    fwmark: int = 0
    protocol: str = "ipv4"
    state: DeviceState = DeviceState.UNKNOWN
    last_error: str = ""
    public_endpoints: tuple[str, ...] = ()
    nat_mapping: NatMapping = NatMapping.UNKNOWN
    last_refresh: int = 0  # µs since the epoch
    next_refresh: int = 0
    peers: dict[str, PeerStatus] = field(default_factory=dict)  # by base64 public key
    _model: Model | None = field(default=None, repr=False, compare=False)
    _dirty: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


class Model:
    """All devices and peers, the object numbering, and the event stream."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceStatus] = {}  # by interface name
        self.state = ManagerState.UNKNOWN
        self._listeners: list[Listener] = []
        self._dirty: dict[int, _Tracked] = {}
        self._flush_scheduled = False
        # object numbers are never reused during one run (a re-created wg0 gets a new one)
        self._device_ids = itertools.count(1)
        self._peer_ids = itertools.count(1)

    # -- listeners
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def emit(self, event: Event) -> None:
        if not isinstance(event, Changed):
            self.flush()  # keep order: property changes before the signal that follows them
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the engine
                log.exception("event listener failed event=%s", type(event).__name__)

    # -- manager state
    def set_state(self, state: ManagerState) -> None:
        if state != self.state:
            self.state = state
            self.emit(ManagerChanged({"state": state}))

    # -- devices and peers
    def add_device(self, interface: str, **fields_: Any) -> DeviceStatus:
        device = DeviceStatus(id=next(self._device_ids), interface=interface, **fields_)
        device._model = self
        self.devices[interface] = device
        self.emit(DeviceAdded(device))
        return device

    def remove_device(self, interface: str) -> None:
        device = self.devices.pop(interface, None)
        if device is None:
            return
        for key in list(device.peers):
            self.remove_peer(device, key)
        device._model = None
        self._dirty.pop(id(device), None)
        self.emit(DeviceRemoved(device))

    def add_peer(self, device: DeviceStatus, **fields_: Any) -> PeerStatus:
        peer = PeerStatus(
            id=next(self._peer_ids), device_id=device.id, interface=device.interface, **fields_
        )
        peer._model = self
        device.peers[peer.public_key] = peer
        self.emit(PeerAdded(peer))
        return peer

    def remove_peer(self, device: DeviceStatus, public_key: str) -> None:
        peer = device.peers.pop(public_key, None)
        if peer is None:
            return
        peer._model = None
        self._dirty.pop(id(peer), None)
        self.emit(PeerRemoved(peer))

    def find_peer(self, public_key: str) -> PeerStatus | None:
        for device in self.devices.values():
            if public_key in device.peers:
                return device.peers[public_key]
        return None

    # -- batching
    def _mark_dirty(self, obj: _Tracked) -> None:
        self._dirty[id(obj)] = obj
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Emit one Changed event per object changed since the last flush."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for obj in dirty.values():
            changes = obj.take_changes()
            if changes:
                self.emit(Changed(obj, changes))  # type: ignore[arg-type]
