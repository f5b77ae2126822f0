"""The engine as the rest of the daemon sees it: every device's worker, the shared stores,
reload, network events, and the manager's State."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from stunmeshd.config import Config, InterfaceConfig, PluginConfig
from stunmeshd.discovery import StunSettings
from stunmeshd.errors import DeviceNotFound, StoreError, StunmeshError, WireGuardError
from stunmeshd.model import (
    Changed,
    DeviceAdded,
    DeviceRemoved,
    DeviceState,
    DeviceStatus,
    Event,
    ManagerState,
    Model,
)
from stunmeshd.stores.base import Store
from stunmeshd.wireguard.base import WireGuardBackend

from .clock import Clock, SystemClock
from .runtime import CycleResult, PeerRuntime, log
from .schedule import cycle_interval
from .worker import DeviceWorker

T = TypeVar("T")

STORE_CONCURRENCY = 32  # store operations in flight per device
STORE_GRACE = 5.0  # s on top of a plugin's own timeout, against stores that ignore theirs
DEFAULT_STORE_TIMEOUT = 10.0  # s, for a third-party store that states no timeout of its own

BackendFactory = Callable[[str], WireGuardBackend]
StoreFactory = Callable[[PluginConfig], Store]


def store_timeout(store: Store, plugin: PluginConfig | None) -> float:
    """The store's own time limit per operation (it knows its default), else the config's."""
    own = getattr(store, "timeout", None)
    if isinstance(own, int | float) and not isinstance(own, bool) and own > 0:
        return float(own)
    if plugin is not None and plugin.timeout is not None:
        return plugin.timeout
    return DEFAULT_STORE_TIMEOUT


class Engine:
    """All device workers, the shared stores, and the manager-level state."""

    def __init__(
        self,
        config: Config,
        model: Model | None = None,
        *,
        backend_factory: BackendFactory | None = None,
        store_factory: StoreFactory | None = None,
        stun_sock_factory: Any = None,
        clock: Clock | None = None,
    ) -> None:
        from stunmeshd.stores.registry import create_store
        from stunmeshd.wireguard import backend_for

        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.model = model or Model()
        self.backend_factory = backend_factory or backend_for
        self.store_factory = store_factory or create_store
        self.stun_settings = StunSettings(
            tuple(config.stun_servers), sock_factory=stun_sock_factory
        )
        self.stores: dict[str, Store] = {}
        self.workers: dict[str, DeviceWorker] = {}
        self._store_limits: dict[str, asyncio.Semaphore] = {}
        self.model.subscribe(self._follow_devices)

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Build every store (raises ConfigError for bad options), then start the workers."""
        self.model.set_state(ManagerState.STARTING)
        for iface in self.config.interfaces.values():
            for peer in iface.peers.values():
                self.store_for(peer.plugin)
        for cfg in self.config.interfaces.values():
            self._start_worker(cfg)
        self.model.set_state(ManagerState.RUNNING)

    def _start_worker(self, cfg: InterfaceConfig) -> None:
        worker = DeviceWorker(self, cfg)
        self.workers[cfg.name] = worker
        worker.start()

    async def stop(self) -> None:
        self.model.set_state(ManagerState.STOPPING)
        await asyncio.gather(*(w.stop() for w in self.workers.values()))
        for worker in self.workers.values():
            worker.remove_all()
        self.workers.clear()
        await asyncio.gather(*(s.close() for s in self.stores.values()), return_exceptions=True)
        self.stores.clear()

    # ---- reload ----------------------------------------------------------------------

    async def reload(self) -> None:
        """Re-read the config file and apply the difference; an invalid file changes nothing."""
        from stunmeshd.config import load_config

        new = await asyncio.to_thread(load_config, self.config.source)
        await self.apply_config(new)
        for warning in new.warnings:  # e.g. a peer the new file disables, as at start
            log.warning("config: %s", warning)

    async def apply_config(self, new: Config) -> None:
        """Apply a new config: interfaces, peers and stores that did not change keep state.

        Stores are built first, so a bad store option (ConfigError) leaves everything as it was.
        """
        old = self.config
        fresh: dict[str, Store] = {}
        for name, plugin in new.plugins.items():
            if old.plugins.get(name) != plugin or name not in self.stores:
                if any(p.plugin == name for i in new.interfaces.values() for p in i.peers.values()):
                    fresh[name] = self.store_factory(plugin)
        replaced = [self.stores[name] for name in fresh if name in self.stores]
        self.config = new
        self.stun_settings = StunSettings(
            tuple(new.stun_servers), sock_factory=self.stun_settings.sock_factory
        )
        for name, store in fresh.items():
            self.stores[name] = store
            self._store_limits[name] = asyncio.Semaphore(STORE_CONCURRENCY)
        for name in list(self.stores):
            if name not in new.plugins:
                replaced.append(self.stores.pop(name))
        for ifname in list(self.workers):
            if ifname not in new.interfaces:
                gone = self.workers.pop(ifname)
                await gone.stop()
                gone.remove_all()
        for ifname, cfg in new.interfaces.items():
            worker = self.workers.get(ifname)
            if worker is None:
                self._start_worker(cfg)
                continue
            for rt in worker.peers.values():  # peers of a rebuilt store follow it
                if rt.cfg.plugin in fresh:
                    rt.store = fresh[rt.cfg.plugin]
                    if rt.watch is not None:
                        rt.watch.cancel()
            worker.update_config(cfg)
        await asyncio.gather(*(s.close() for s in replaced), return_exceptions=True)
        self.update_manager_state()
        log.info(
            "configuration reloaded source=%s interfaces=%s",
            new.source,
            ",".join(new.interfaces) or "-",
        )

    # ---- network events (netwatch) -----------------------------------------------------

    def on_link(self, ifname: str, present: bool) -> None:
        """A link appeared or vanished: a managed one is re-read at once."""
        worker = self.workers.get(ifname)
        if worker is not None:
            log.info("link %s iface=%s", "appeared" if present else "vanished", ifname)
            if present:
                # the backoff grew while the link was gone, and the link shows before its
                # control socket (wireguard-go): retry from the shortest delay again
                worker.schedule.link_appeared()
            worker.trigger_full()

    def on_network_change(self, reason: str) -> None:
        """Addresses or routes changed: every device re-discovers (coalesced per device)."""
        log.info("network changed reason=%s", reason)
        for worker in self.workers.values():
            worker.request_rediscover()

    def worker(self, interface: str) -> DeviceWorker:
        try:
            return self.workers[interface]
        except KeyError:
            raise DeviceNotFound(f"no managed WireGuard interface {interface!r}") from None

    async def refresh(self, interface: str | None = None) -> list[CycleResult]:
        """Run a full cycle on one or all devices and wait for it."""
        workers = [self.worker(interface)] if interface else list(self.workers.values())
        return list(await asyncio.gather(*(w.request_full() for w in workers)))

    async def refresh_peer(self, public_key: str) -> CycleResult:
        for worker in self.workers.values():
            status = worker.status.peers.get(public_key)
            if status is not None and status.state.inactive:
                return CycleResult(False, status.last_error, WireGuardError)
            if status is not None:
                key = base64.b64decode(public_key)
                return await worker.request_peer(key)
        raise StunmeshError(f"no managed peer {public_key!r}")

    # ---- helpers used by workers -------------------------------------------------------

    def store_for(self, plugin: str) -> Store:
        """One store instance per plugin, shared by every peer and device that names it."""
        if plugin not in self.stores:
            self.stores[plugin] = self.store_factory(self.config.plugins[plugin])
            self._store_limits[plugin] = asyncio.Semaphore(STORE_CONCURRENCY)
        return self.stores[plugin]

    async def store_call(self, store: Store, op: Awaitable[T]) -> T:
        """Bound concurrency and time of one store operation, whatever the store does."""
        limit = self._store_limits.get(store.name) or asyncio.Semaphore(STORE_CONCURRENCY)
        timeout = store_timeout(store, self.config.plugins.get(store.name)) + STORE_GRACE
        async with limit:
            try:
                return await asyncio.wait_for(op, timeout)
            except TimeoutError:
                raise StoreError(f"no answer within {timeout:.0f} s") from None

    def cycle_interval(self, peers: Iterable[PeerRuntime]) -> float:
        """The refresh interval, shortened to what the stores' record lifetimes demand."""
        return cycle_interval(
            self.config.refresh_interval,
            (rt.store.capabilities.republish_interval for rt in peers),
        )

    def _follow_devices(self, event: Event) -> None:
        """Manager State follows every device transition: a device that fails makes the
        daemon degraded, and one that recovers (or comes back) makes it running again."""
        match event:
            case DeviceAdded() | DeviceRemoved():
                self.update_manager_state()
            case Changed(obj=DeviceStatus(), changes=changes) if "state" in changes:
                self.update_manager_state()

    def update_manager_state(self) -> None:
        if self.model.state not in (ManagerState.RUNNING, ManagerState.DEGRADED):
            return
        failing = any(w.status.state == DeviceState.FAILED for w in self.workers.values())
        self.model.set_state(ManagerState.DEGRADED if failing else ManagerState.RUNNING)
