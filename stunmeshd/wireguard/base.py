"""What the engine needs from WireGuard, whatever drives it (kernel or wireguard-go)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from stunmeshd.crypto import public_key as derive_public_key
from stunmeshd.errors import WireGuardError


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One peer as WireGuard reports it."""

    public_key: bytes  # 32 raw bytes
    endpoint: str | None  # "203.0.113.7:51820" or "[2001:db8::7]:51820"; None when unset
    latest_handshake: float  # unix seconds; 0.0 = never
    rx_bytes: int
    tx_bytes: int
    persistent_keepalive: int  # seconds; 0 = off
    allowed_ips: tuple[str, ...] = ()  # what re-creating the peer needs (reset_peer)
    preshared_key: bytes = field(default=b"", repr=False)  # secret: never logged


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One WireGuard device. ``private_key`` is kept out of repr so it never reaches a log."""

    name: str
    private_key: bytes = field(repr=False)  # 32 raw bytes
    public_key: bytes  # 32 raw bytes, derived from the private key
    listen_port: int
    fwmark: int
    peers: Mapping[bytes, PeerInfo]  # by raw public key; never changed in place

    def with_peer(self, peer: PeerInfo) -> DeviceInfo:
        """This device with ``peer`` added or replaced (what WireGuard holds after a write)."""
        return replace(self, peers={**self.peers, peer.public_key: peer})


def device_info(
    name: str,
    private_key: bytes | None,
    listen_port: int,
    fwmark: int,
    peers: dict[bytes, PeerInfo],
) -> DeviceInfo:
    """What a backend read, as a DeviceInfo; a device without a private key cannot seal."""
    if private_key is None:
        raise WireGuardError(f"WireGuard interface {name} has no private key set")
    return DeviceInfo(
        name=name,
        private_key=private_key,
        public_key=derive_public_key(private_key),
        listen_port=listen_port,
        fwmark=fwmark,
        peers=peers,
    )


class WireGuardBackend(Protocol):
    """One way of driving WireGuard devices."""

    kind: str  # "kernel" or "wireguard-go" (the Device.Backend property)

    async def read_device(self, ifname: str) -> DeviceInfo:
        """Read keys, port, fwmark and peers. Raises DeviceNotFound / WireGuardError."""
        ...

    async def set_endpoint(
        self, ifname: str, public_key: bytes, endpoint: str, *, keepalive: int | None = None
    ) -> None:
        """Set one existing peer's endpoint (update-only: never creates a peer).

        With ``keepalive`` set, the peer's persistent keepalive is set to it through a 0 -> N
        transition, which makes WireGuard send at once: a keepalive on a live session (opening
        the NAT towards a moved peer), else a handshake initiation.
        """
        ...

    async def reset_peer(self, ifname: str, peer: PeerInfo, endpoint: str, keepalive: int) -> None:
        """Re-create a peer that has no session yet, pointed at ``endpoint``, and kick it.

        WireGuard holds a peer's next handshake initiation back for 5 s (REKEY_TIMEOUT) after
        any attempt, also one made while the peer had no endpoint; a new peer is not held
        back. Only for peers that never completed a handshake: nothing is lost.
        """
        ...
