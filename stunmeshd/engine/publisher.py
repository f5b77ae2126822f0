"""Our side of a device: discover its public endpoints (STUN), keep the NAT mapping warm,
publish the sealed record to every peer's store, and kick WireGuard after our endpoint moved."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from stunmeshd import crypto
from stunmeshd.discovery import Discovery, discover
from stunmeshd.errors import StoreError, WireGuardError
from stunmeshd.model import EndpointChanged
from stunmeshd.stores.dedup import publish
from stunmeshd.wireguard.base import DeviceInfo

from .decisions import kick_keepalive
from .runtime import PeerRuntime, log

if TYPE_CHECKING:
    from stunmeshd.config import InterfaceConfig
    from stunmeshd.model import DeviceStatus
    from stunmeshd.portmap.device import DevicePortMap
    from stunmeshd.wireguard.base import WireGuardBackend

    from .clock import Clock
    from .manager import Engine
    from .schedule import Schedule


def seal_within(
    record: crypto.EndpointRecord, limit: int, own_private: bytes, peer_public: bytes
) -> str:
    """The sealed record, without ``ts`` when only that keeps it within ``limit`` characters.

    A store whose readers cannot take longer values (a TXT string holds 255 characters, and
    stunmesh-go's Cloudflare reader does not join split strings) says so with
    ``max_value_length``. ``ts`` adds 38 characters; dropping it leaves exactly the record
    stunmesh-go writes, so such a peer reads it. What still exceeds the limit is returned as
    is: stunmesh-go's own record for those endpoints would be as long.
    """
    value = crypto.seal(record.to_json(), own_private, peer_public)
    if len(value) > limit and record.ts is not None:
        value = crypto.seal(record.to_json(with_ts=False), own_private, peer_public)
    return value


class PublishHost(Protocol):
    """What discovery, publishing and kicks need from the device's worker."""

    cfg: InterfaceConfig
    info: DeviceInfo | None
    status: DeviceStatus
    peers: dict[bytes, PeerRuntime]
    schedule: Schedule
    clock: Clock
    engine: Engine
    backend: WireGuardBackend
    portmap: DevicePortMap

    async def read_device(self) -> DeviceInfo | None: ...

    def set_failed(self, error: str) -> None: ...

    def warn_once(self, tag: str, msg: str, *args: Any) -> None: ...


class Publisher:
    """Discovery, publishing and kicks for one device."""

    def __init__(self, worker: PublishHost) -> None:
        self.w = worker
        self.discovery = Discovery()
        self.published: tuple[str, ...] = ()  # endpoints last published (across re-creation)

    @property
    def moved(self) -> bool:
        """Our endpoints differ from the ones last published."""
        return bool(self.published) and self.published != self.w.status.public_endpoints

    async def discover(self, *, classify: bool) -> Discovery:
        w = self.w
        assert w.info is not None
        discovery = await discover(
            w.engine.stun_settings,
            port=w.info.listen_port,
            fwmark=w.info.fwmark,
            protocol=w.cfg.protocol,
            classify=classify,
        )
        w.schedule.discovered(w.clock.monotonic())
        if not discovery.ok:
            w.set_failed(f"STUN failed: {discovery.error_text()}")
            return discovery
        if not classify:  # a warm-up keeps the last classification
            discovery = Discovery(discovery.endpoints, self.discovery.nat_mapping, discovery.errors)
        endpoints = tuple(
            discovery.endpoints[f] for f in ("ipv4", "ipv6") if f in discovery.endpoints
        )
        changed = endpoints != w.status.public_endpoints
        self.discovery = discovery
        w.status.update(public_endpoints=endpoints, nat_mapping=discovery.nat_mapping)
        if discovery.errors:
            log.warning("discovery partly failed iface=%s %s", w.cfg.name, discovery.error_text())
        if changed:
            log.info(
                "public endpoint iface=%s endpoints=%s nat=%s",
                w.cfg.name,
                ",".join(endpoints),
                discovery.nat_mapping,
            )
            w.engine.model.emit(EndpointChanged(w.status, endpoints))
        if discovery.nat_mapping.dependent:
            w.warn_once(
                f"nat:{discovery.nat_mapping}",
                "NAT mapping is %s (symmetric): peers cannot reach the port STUN "
                "discovered, a tunnel cannot form from STUN alone iface=%s",
                discovery.nat_mapping,
                w.cfg.name,
            )
        return discovery

    async def rediscover(self) -> None:
        """Keep the NAT mapping warm; republish when it moved."""
        w = self.w
        if await w.read_device() is None:
            return
        before = w.status.public_endpoints
        discovery = await self.discover(classify=False)
        log.debug(
            "rediscovered iface=%s endpoints=%s",
            w.cfg.name,
            ",".join(w.status.public_endpoints) or "-",
        )
        if discovery.ok and w.status.public_endpoints != before and w.info is not None:
            await self.publish_all(w.info)
            await self.wait_for_kick()
            await self.kick_unchanged(w.info)

    async def wait_for_kick(self) -> None:
        """Our endpoint moved and was just published: give peers a moment to see the new record
        and open their NATs towards it (``Schedule.kick_at``)."""
        now = self.w.clock.monotonic()
        await self.w.clock.sleep(self.w.schedule.kick_at(now) - now)

    async def publish_all(
        self, info: DeviceInfo, runtimes: list[PeerRuntime] | None = None
    ) -> None:
        w = self.w
        endpoints = await w.portmap.choose(self.discovery.endpoints, self.discovery.nat_mapping)
        record = crypto.EndpointRecord.stamped(
            ipv4=endpoints.get("ipv4"), ipv6=endpoints.get("ipv6")
        )
        plaintext = record.to_json()
        targets = list(w.peers.values()) if runtimes is None else runtimes
        await asyncio.gather(*(self._publish(rt, info, record, plaintext) for rt in targets))

    async def _publish(
        self, rt: PeerRuntime, info: DeviceInfo, record: crypto.EndpointRecord, plaintext: bytes
    ) -> None:
        w = self.w
        w.schedule.publish_started(rt.key)
        value = crypto.seal(plaintext, info.private_key, rt.cfg.public_key)
        limit = rt.store.capabilities.max_value_length
        if limit and len(value) > limit:
            value = seal_within(record, limit, info.private_key, rt.cfg.public_key)
            if len(value) > limit:
                w.warn_once(
                    f"long:{rt.cfg.plugin}",
                    "record of %d chars exceeds store %s's %d; stunmesh-go peers may not "
                    "read it (its own record would be as long) iface=%s",
                    len(value),
                    rt.cfg.plugin,
                    limit,
                    w.cfg.name,
                )
        key = crypto.publish_key(info.public_key, rt.cfg.public_key)
        try:
            written = await w.engine.store_call(
                rt.store, publish(rt.store, key, value, record.fingerprint)
            )
        except StoreError as exc:
            log.warning(
                "publish failed iface=%s peer=%s store=%s error=%s",
                w.cfg.name,
                rt.cfg.label,
                rt.cfg.plugin,
                exc,
            )
            rt.status.update(last_error=f"publish failed: {exc}")
            w.schedule.publish_failed(rt.key, w.clock.monotonic())
            return
        w.schedule.published(rt.key)
        self.published = w.status.public_endpoints
        if written:
            rt.guard.note_published(value)
            log.debug("published iface=%s peer=%s key=%s", w.cfg.name, rt.cfg.label, key)

    async def kick_unchanged(self, info: DeviceInfo) -> None:
        """Our endpoint moved: make WireGuard send to every peer now, from where we are.

        A peer whose endpoint did not change is not kicked by applying it, yet behind a NAT
        that filters by address and port our NAT drops what the peer sends to our new
        endpoint until we have sent to the peer from it; with nothing to send (the peer's
        traffic goes to our old port) that would wait for the next keepalive, up to 25 s.
        """
        w = self.w
        moment = w.clock.monotonic()
        for key, rt in list(w.peers.items()):
            current = info.peers.get(key)
            if current is None or not current.endpoint:
                continue
            if w.schedule.kicked_with_apply(key, moment):
                continue  # set just now, and kicked with it
            try:
                await w.backend.set_endpoint(
                    w.cfg.name, key, current.endpoint, keepalive=kick_keepalive(current)
                )
            except WireGuardError as exc:
                log.warning("kick failed iface=%s peer=%s error=%s", w.cfg.name, rt.cfg.label, exc)
                continue
            log.debug("kicked iface=%s peer=%s", w.cfg.name, rt.cfg.label)
