"""Which peers a device's worker manages: configured and on the interface (managed), configured
but missing from it (``NOT_ON_DEVICE``), or disabled by the configuration (``DISABLED``); and the
store watches that re-fetch a peer as soon as it republishes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol, cast

from stunmeshd import crypto
from stunmeshd.config import InterfaceConfig, PeerConfig
from stunmeshd.errors import StoreError
from stunmeshd.model import PeerState, PeerStatus
from stunmeshd.stores.base import WatchableStore
from stunmeshd.wireguard.base import DeviceInfo

from .runtime import PeerRuntime, b64, log
from .schedule import WATCH_BACKOFF, Backoff

if TYPE_CHECKING:
    from stunmeshd.model import DeviceStatus

    from .clock import Clock
    from .manager import Engine
    from .monitor import Monitor
    from .schedule import Schedule


def disabled_key(label: str) -> str:
    """A disabled peer's place in DeviceStatus.peers: its key may be invalid or another's."""
    return f"disabled:{label}"


class PeersHost(Protocol):
    """What keeping the peer set needs from the device's worker."""

    cfg: InterfaceConfig
    info: DeviceInfo | None
    status: DeviceStatus
    schedule: Schedule
    clock: Clock
    engine: Engine
    monitor: Monitor

    @property
    def present(self) -> bool: ...

    def trigger_full(self) -> None: ...

    def wake(self) -> None: ...

    def warn_once(self, tag: str, msg: str, *args: Any) -> None: ...

    def forget_warning(self, tag: str) -> None: ...


class PeerSet:
    """The device's peers and their bus objects."""

    def __init__(self, worker: PeersHost) -> None:
        self.w = worker
        self.peers: dict[bytes, PeerRuntime] = {}
        # configured peers the interface lacks: on the bus as NOT_ON_DEVICE, nothing more
        self.absent: dict[bytes, PeerStatus] = {}
        self.disabled: dict[str, PeerStatus] = {}  # by label: the peers the config disables
        self._guards: dict[bytes, crypto.RecordGuard] = {}  # outlive re-created devices

    def sync(self, info: DeviceInfo) -> None:
        """Manage the peers that are both configured and on the device; show configured peers
        the device lacks as NOT_ON_DEVICE (the same object moves on once WireGuard has them);
        warn about the rest."""
        w = self.w
        configured = {p.public_key: p for p in w.cfg.peers.values()}
        for key in [*self.peers, *self.absent]:
            if key not in configured:
                self.remove(key)
        for key, peer_cfg in configured.items():
            if key in info.peers and key not in self.peers:
                self._add(peer_cfg)
            elif key not in info.peers and key not in self.absent:
                self._set_absent(peer_cfg)
        for key in info.peers:
            if key not in configured:
                w.warn_once(
                    f"extra:{b64(key)}",
                    "device peer is not in the config, leaving it alone iface=%s peer=%s",
                    w.cfg.name,
                    b64(key),
                )
        for rt in self.peers.values():
            self._ensure_watch(rt)
        self.sync_disabled()

    def update_config(self, cfg: InterfaceConfig) -> None:
        """A reloaded interface config: peers that did not change keep their state."""
        configured = {p.public_key: p for p in cfg.peers.values()}
        for key in [*self.peers, *self.absent]:
            if key not in configured:
                self.remove(key)
        for key, rt in self.peers.items():
            new = configured[key]
            if new != rt.cfg:
                self._reconfigure(rt, new)
        for key, status in self.absent.items():
            new = configured[key]
            status.update(name=new.label, store=new.plugin, protocol=new.protocol)
        self.sync_disabled()

    def _reconfigure(self, rt: PeerRuntime, new: PeerConfig) -> None:
        self.w.schedule.resolve_again(rt.key)  # the ping target may have changed
        if new.plugin != rt.cfg.plugin:
            rt.store = self.w.engine.store_for(new.plugin)
            if rt.watch is not None:
                rt.watch.cancel()  # re-established on the next sync, on the new store
        rt.cfg = new
        rt.status.update(
            name=new.label, store=new.plugin, protocol=new.protocol, description=new.description
        )

    def sync_disabled(self) -> None:
        """Peers the configuration disables are on the bus (while the device is) as DISABLED,
        with the reason in LastError: nothing is fetched, published or applied for them."""
        w = self.w
        for label, status in list(self.disabled.items()):
            if not status.attached or not w.present or label not in w.cfg.disabled:
                if status.attached:
                    w.engine.model.remove_peer(w.status, disabled_key(label))
                del self.disabled[label]
        if not w.present:
            return
        for label, peer in w.cfg.disabled.items():
            fields: dict[str, Any] = {
                "name": label,
                "public_key": b64(peer.public_key) if peer.public_key else "",
                "store": peer.plugin,
                "protocol": peer.protocol,
                "state": PeerState.DISABLED,
                "last_error": peer.reason,
            }
            existing = self.disabled.get(label)
            if existing is None:
                self.disabled[label] = w.engine.model.add_peer(
                    w.status, key=disabled_key(label), **fields
                )
            else:
                existing.update(**fields)

    def _set_absent(self, cfg: PeerConfig) -> None:
        """The interface lacks this configured peer: stop working on it, and say why."""
        w = self.w
        reason = (
            f"not on WireGuard interface {w.cfg.name}: stunmeshd only sets endpoints of "
            "peers WireGuard already has (add it with wg set or the network configuration)"
        )
        w.warn_once(
            f"missing:{b64(cfg.public_key)}",
            "configured peer is not on the device, skipping iface=%s peer=%s",
            w.cfg.name,
            cfg.label,
        )
        rt = self.peers.pop(cfg.public_key, None)
        w.schedule.remove_peer(cfg.public_key)
        if rt is not None:
            rt.cancel_tasks()
        status = w.status.peers.get(b64(cfg.public_key))
        fields: dict[str, Any] = {
            "state": PeerState.NOT_ON_DEVICE,
            "last_error": reason,
            "endpoint": "",
            "latest_handshake": 0,
            "rx_bytes": 0,
            "tx_bytes": 0,
        }
        if status is None:
            status = self._new_status(cfg, **fields)
        else:
            status.update(**fields)
        self.absent[cfg.public_key] = status

    def _new_status(self, cfg: PeerConfig, **fields: Any) -> PeerStatus:
        """The Peer object of a configured peer (its bus object appears with it)."""
        return self.w.engine.model.add_peer(
            self.w.status,
            name=cfg.label,
            public_key=b64(cfg.public_key),
            store=cfg.plugin,
            protocol=cfg.protocol,
            description=cfg.description,
            **fields,
        )

    def _add(self, cfg: PeerConfig) -> None:
        w = self.w
        status = self.absent.pop(cfg.public_key, None)
        if status is None:
            status = self._new_status(cfg)
        else:  # WireGuard gained the peer: the same object moves on, with a full cycle
            status.update(state=PeerState.UNKNOWN, last_error="")
            w.forget_warning(f"missing:{b64(cfg.public_key)}")
            w.trigger_full()
        w.schedule.add_peer(cfg.public_key, w.engine.config.refresh_interval)
        rt = self.peers[cfg.public_key] = PeerRuntime(
            guard=self._guards.setdefault(cfg.public_key, crypto.RecordGuard()),
            cfg=cfg,
            status=status,
            store=w.engine.store_for(cfg.plugin),
        )
        w.monitor.schedule_ping(rt)
        log.info(
            "peer added iface=%s peer=%s key=%s store=%s",
            w.cfg.name,
            cfg.label,
            status.public_key,
            cfg.plugin,
        )

    def remove(self, key: bytes) -> None:
        w = self.w
        self.absent.pop(key, None)
        rt = self.peers.pop(key, None)
        w.schedule.remove_peer(key)
        if rt is not None:
            log.info(
                "peer no longer managed (WireGuard keeps it) iface=%s peer=%s",
                w.cfg.name,
                rt.cfg.label,
            )
            rt.cancel_tasks()
        w.engine.model.remove_peer(w.status, b64(key))

    def remove_all(self) -> None:
        for key in [*self.peers, *self.absent]:
            self.remove(key)

    async def stop_tasks(self) -> None:
        """The store watches and ping checks end with the worker."""
        tasks = [t for rt in self.peers.values() for t in (rt.watch, rt.ping_task) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _ensure_watch(self, rt: PeerRuntime) -> None:
        """Follow the peer's record where the store can notify (OpenDHT listen)."""
        w = self.w
        if w.info is None or not rt.store.capabilities.supports_watch:
            return
        key = crypto.fetch_key(w.info.public_key, rt.cfg.public_key)
        if rt.watch is not None and not rt.watch.done() and rt.watch_key == key:
            return
        if rt.watch is not None:
            rt.watch.cancel()
        rt.watch_key = key
        rt.watch = asyncio.create_task(
            self._follow(rt, key), name=f"watch-{w.cfg.name}-{rt.cfg.label}"
        )

    async def _follow(self, rt: PeerRuntime, key: str) -> None:
        """Re-fetch the peer as soon as it publishes; re-establish the watch with backoff."""
        w = self.w
        backoff = Backoff(*WATCH_BACKOFF)
        while True:
            live = False  # the first wake of each watch only says it is live
            try:
                async for _ in cast(WatchableStore, rt.store).watch(key):
                    backoff.reset()
                    log.debug("peer republished iface=%s peer=%s", w.cfg.name, rt.cfg.label)
                    rt.watch_news, live = live, True
                    w.schedule.watch_woke(rt.key, w.clock.monotonic())
                    w.wake()
            except StoreError as exc:
                log.debug("watch failed iface=%s peer=%s error=%s", w.cfg.name, rt.cfg.label, exc)
            await w.clock.sleep(backoff.next())
