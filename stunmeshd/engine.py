"""The engine: one worker per managed WireGuard interface — discover, publish, fetch, apply.

When cycles run, what is retried how soon, when a peer counts as failed: the scheduling rules
are written down once, in docs/architecture.md ("Scheduling rules"); this module implements them.

The engine knows nothing of D-Bus: it writes ``model`` state and emits its events.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from stunmeshd import crypto
from stunmeshd.config import Config, InterfaceConfig, PeerConfig, PluginConfig
from stunmeshd.discovery import Discovery, StunSettings, discover
from stunmeshd.errors import (
    DeviceNotFound,
    RecordError,
    StoreError,
    StunError,
    StunmeshError,
    WireGuardError,
)
from stunmeshd.health import TrafficWatch, ping, resolve_ping_target
from stunmeshd.logs import Throttle
from stunmeshd.model import (
    Changed,
    DeviceAdded,
    DeviceRemoved,
    DeviceState,
    DeviceStatus,
    EndpointChanged,
    Event,
    ManagerState,
    Model,
    PeerState,
    PeerStatus,
    RefreshCompleted,
)
from stunmeshd.portmap.device import DevicePortMap
from stunmeshd.stores.base import MultiValueStore, Store, WatchableStore
from stunmeshd.stores.dedup import publish
from stunmeshd.wireguard.base import DeviceInfo, PeerInfo, WireGuardBackend

log = logging.getLogger(__name__)
_noise = Throttle(60.0)  # faults that repeat every cycle: said once a minute per kind
T = TypeVar("T")

RECENT_HANDSHAKE = 180.0  # s: WireGuard drops sessions older than this (REJECT_AFTER_TIME)
HANDSHAKE_GRACE = 15.0  # s after setting an endpoint before we say the tunnel did not form
WARM_INTERVAL = 25.0  # s: re-STUN at most this often while a peer lacks a handshake
FETCH_BACKOFF_START = 1.0  # s
WATCH_RECHECK = 0.25  # s: a re-read after a watch's news found nothing is tried again this soon
DEVICE_BACKOFF_START = 0.25  # s, for a missing device or failed discovery
DEVICE_BACKOFF_CAP = 30.0
KICK_KEEPALIVE = 25  # s: persistent keepalive set on peers that have none (NAT needs it)
POLL_FAST = 1.0  # s: device poll while a handshake is awaited
POLL_BUSY = 1.0  # s: device poll while data flows, to see a broken path quickly
POLL_SLOW = 5.0  # s: device poll otherwise: handshake age, rx/tx
PEER_WAIT = 30.0  # s after a device appears during which peers missing from it are polled for
PUNCH_DELAY = 0.3  # s between publishing a moved endpoint and kicking WireGuard towards peers
COLLISION_CHECK = 0.5  # s after a first endpoint before the lower key re-creates a silent peer
PING_RESOLVE_TTL = 300.0  # s a ping target's host name lookup is used before a new one
PING_RESOLVE_RETRY = 30.0  # s after a failed lookup before the next
PING_RESOLVE_TIMEOUT = 5.0  # s a lookup may take; the loop never waits on it
BAD_FAMILY_TTL = 120.0  # s a family whose path broke is avoided by prefer_* peers
STORE_CONCURRENCY = 32  # store operations in flight per device
STORE_GRACE = 5.0  # s on top of a plugin's own timeout, against stores that ignore theirs
DEFAULT_STORE_TIMEOUT = 10.0  # s, for a third-party store that states no timeout of its own

BackendFactory = Callable[[str], WireGuardBackend]
StoreFactory = Callable[[PluginConfig], Store]


def now_us() -> int:
    return int(time.time() * 1_000_000)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class Backoff:
    """Doubling delay between ``start`` and ``cap``."""

    def __init__(self, start: float, cap: float) -> None:
        self.start, self.cap, self._next = start, cap, start

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.start


@dataclass(frozen=True, slots=True)
class CycleResult:
    ok: bool
    error: str = ""
    cause: type[StunmeshError] | None = None


@dataclass(eq=False)
class PeerRuntime:
    """The engine's private per-peer bookkeeping; public state lives in ``status``."""

    cfg: PeerConfig
    status: PeerStatus
    store: Store
    fetch_backoff: Backoff
    next_fetch: float | None = None  # loop time of the next re-fetch outside full cycles
    next_publish: float | None = None  # loop time of a publish retry after a failure
    publish_backoff: Backoff = field(default_factory=lambda: Backoff(FETCH_BACKOFF_START, 60.0))
    applied_at: float | None = None  # loop time we last set its endpoint
    guard: crypto.RecordGuard = field(default_factory=crypto.RecordGuard)
    traffic: TrafficWatch = field(default_factory=TrafficWatch)
    watch: asyncio.Task[None] | None = None  # follows the peer's record (stores that notify)
    watch_key: str = ""
    watch_news: bool = False  # the watch reported a new value the next fetch has to find
    watch_woke_at: float = float("-inf")  # loop time of the watch's last wake
    next_ping: float | None = None  # loop time of the next ICMP check (ping settings)
    next_collision_check: float | None = None  # loop time to re-create it if still silent
    ping_task: asyncio.Task[None] | None = None  # the check in flight (never awaited by the loop)
    bad_families: dict[str, float] = field(default_factory=dict)  # family -> avoid until

    def avoided_families(self, now: float) -> frozenset[str]:
        return frozenset(f for f, until in self.bad_families.items() if until > now)

    def endpoint_failed(self, now: float) -> None:
        """The applied endpoint's path does not work: prefer the other family for a while."""
        family = "ipv6" if self.status.endpoint.startswith("[") else "ipv4"
        if self.status.endpoint:
            self.bad_families[family] = now + BAD_FAMILY_TTL

    ping_failures: int = 0
    ping_address: str = ""  # ping.target resolved (a host name is looked up now and then)
    ping_resolve_after: float = float("-inf")  # loop time from which it is looked up again


class DeviceWorker:
    """Keeps one WireGuard interface's endpoint published and its peers' endpoints applied."""

    def __init__(self, engine: Engine, cfg: InterfaceConfig) -> None:
        self.engine = engine
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.backend = engine.backend_factory(cfg.name)
        # Detached until the device is seen: a Device object exists on the bus only while the
        # interface does, and a re-created interface gets a fresh object (and number).
        self.status = self._detached_status()
        self.peers: dict[bytes, PeerRuntime] = {}
        # configured peers the interface lacks: on the bus as NOT_ON_DEVICE, nothing more
        self.absent: dict[bytes, PeerStatus] = {}
        self.disabled: dict[str, PeerStatus] = {}  # by label: the peers the config disables
        self._guards: dict[bytes, crypto.RecordGuard] = {}  # outlive re-created devices
        self.info: DeviceInfo | None = None
        self.discovery = Discovery()
        self.device_backoff = Backoff(DEVICE_BACKOFF_START, DEVICE_BACKOFF_CAP)
        self.next_full = 0.0
        self.next_poll = float("inf")
        self.adopted_at = float("-inf")  # loop time the device (last) appeared
        self.last_discovery = 0.0
        self._wake = asyncio.Event()
        self._full_requested = True
        self._peer_requests: set[bytes] = set()
        self._waiters: list[asyncio.Future[CycleResult]] = []
        self._peer_waiters: list[tuple[bytes, asyncio.Future[CycleResult]]] = []
        self._warned: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self._rediscover_requested = False
        self._published: tuple[str, ...] = ()  # endpoints last published (across re-creation)
        self._cycling = False  # a full cycle is running
        self.portmap = DevicePortMap(cfg, lambda: self.status, self.trigger_full)

    def _detached_status(self) -> DeviceStatus:
        return DeviceStatus(
            id=0, interface=self.cfg.name, protocol=self.cfg.protocol, backend=self.backend.kind
        )

    @property
    def present(self) -> bool:
        """The device exists and is on the bus."""
        return self.status.attached

    # ---- requests ----------------------------------------------------------------------

    def request_full(self) -> asyncio.Future[CycleResult]:
        """Ask for a full cycle; requests made while one is pending share it."""
        waiter: asyncio.Future[CycleResult] = self.loop.create_future()
        self._waiters.append(waiter)
        self._full_requested = True
        self._wake.set()
        return waiter

    def trigger_full(self) -> None:
        """Ask for a full cycle without waiting for it."""
        self._full_requested = True
        self._wake.set()

    def request_rediscover(self) -> None:
        """The host's addresses or routes changed: re-run STUN now (bursts coalesce)."""
        self._rediscover_requested = True
        self._wake.set()
        self.portmap.network_changed("addresses or routes changed")

    def request_peer(self, public_key: bytes) -> asyncio.Future[CycleResult]:
        waiter: asyncio.Future[CycleResult] = self.loop.create_future()
        self._peer_waiters.append((public_key, waiter))
        self._peer_requests.add(public_key)
        self._wake.set()
        return waiter

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"device-{self.cfg.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.portmap.stop()
        watches = [rt.watch for rt in self.peers.values() if rt.watch is not None]
        watches += [rt.ping_task for rt in self.peers.values() if rt.ping_task is not None]
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        for waiter in self._waiters + [w for _, w in self._peer_waiters]:
            if not waiter.done():
                waiter.set_result(CycleResult(False, "daemon stopping"))

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            delay = max(0.0, self._next_deadline() - self.loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not kill the worker; say so and go on
                log.exception("device step failed iface=%s", self.cfg.name)
                self.status.update(state=DeviceState.FAILED, last_error=f"internal error: {exc}")
                self.next_full = self.loop.time() + self.device_backoff.next()

    def _next_deadline(self) -> float:
        deadlines = [self.next_full, self.next_poll]
        if self._needs_warming():
            deadlines.append(self.last_discovery + WARM_INTERVAL)
        deadlines += [rt.next_fetch for rt in self.peers.values() if rt.next_fetch is not None]
        deadlines += [rt.next_publish for rt in self.peers.values() if rt.next_publish is not None]
        deadlines += [rt.next_ping for rt in self.peers.values() if rt.next_ping is not None]
        deadlines += [
            rt.next_collision_check
            for rt in self.peers.values()
            if rt.next_collision_check is not None
        ]
        if self._rediscover_requested:
            deadlines.append(0.0)
        return min(deadlines)

    def _needs_warming(self) -> bool:
        return self.discovery.ok and any(
            rt.status.state != PeerState.CONNECTED for rt in self.peers.values()
        )

    async def _step(self) -> None:
        now = self.loop.time()
        if self._full_requested or now >= self.next_full:
            await self._full_cycle()
            return
        if self._rediscover_requested or (
            self._needs_warming() and now >= self.last_discovery + WARM_INTERVAL
        ):
            self._rediscover_requested = False
            await self._rediscover()
        due = {
            key
            for key, rt in self.peers.items()
            if rt.next_fetch is not None and rt.next_fetch <= now
        }
        due |= self._peer_requests
        retry = [
            rt
            for rt in self.peers.values()
            if rt.next_publish is not None and rt.next_publish <= now
        ]
        if retry and self.info is not None and self.discovery.ok:
            await self._publish_all(self.info, retry)
        collided = [
            rt
            for rt in self.peers.values()
            if rt.next_collision_check is not None and rt.next_collision_check <= now
        ]
        if collided:
            await self._recreate_silent(collided)
        if due:
            await self._serve_peers(due)
        if self.loop.time() >= self.next_poll:
            await self._poll()
        for rt in self.peers.values():
            if rt.next_ping is not None and rt.next_ping <= self.loop.time():
                # in a task of its own: an unanswered ping (no tunnel yet) takes its whole
                # timeout, and fetches, applies and polls must not wait for it
                rt.next_ping = None
                rt.ping_task = asyncio.create_task(
                    self._ping_checked(rt), name=f"ping-{self.cfg.name}-{rt.cfg.label}"
                )

    # ---- full cycle --------------------------------------------------------------------

    async def _full_cycle(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._full_requested = False
        self._cycling = True
        try:
            result = await self._run_full_cycle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("refresh failed iface=%s", self.cfg.name)
            result = CycleResult(False, f"internal error: {exc}")
        finally:
            self._cycling = False
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)
        self.engine.model.emit(RefreshCompleted(self.status, result.ok, result.error))

    async def _run_full_cycle(self) -> CycleResult:
        name = self.cfg.name
        began = self.loop.time()
        info = await self._read_device()
        if info is None:
            self.next_full = self.loop.time() + self.device_backoff.next()
            return CycleResult(False, self.status.last_error, DeviceNotFound)
        self._sync_peers(info)
        self.status.update(state=DeviceState.DISCOVERING)
        discovery = await self._discover(classify=True)
        result = CycleResult(True)
        if discovery.ok:
            self.status.update(state=DeviceState.PUBLISHING)
            moved = bool(self._published) and self._published != self.status.public_endpoints
            await self._publish_all(info)
            if moved:
                # Our endpoint moved (NAT re-mapping, new port): give peers a moment to see the
                # new record and open their NATs towards it before WireGuard's first
                # handshake initiation, which it would otherwise only retry 5 s later.
                await asyncio.sleep(PUNCH_DELAY)
        else:
            result = CycleResult(False, self.status.last_error, StunError)
        await self._serve_peers(set(self.peers), full=True)
        if self._peers_expected(info):
            self.next_poll = min(self.next_poll, self.loop.time() + POLL_FAST)
        if discovery.ok and moved:
            await self._kick_unchanged(info)
        interval = self.engine.cycle_interval(self.peers.values())
        if discovery.ok:
            self.device_backoff.reset()
            self.status.update(state=DeviceState.READY, last_error="")
        else:
            interval = min(interval, self.device_backoff.next())
        self.next_full = self.loop.time() + interval
        self.status.update(last_refresh=now_us(), next_refresh=now_us() + int(interval * 1e6))
        log.info(
            "refresh done iface=%s ok=%s endpoints=%s peers=%d took=%.3fs next_in=%.0fs",
            name,
            result.ok,
            ",".join(self.status.public_endpoints) or "-",
            len(self.peers),
            self.loop.time() - began,
            interval,
        )
        return result

    async def _read_device(self) -> DeviceInfo | None:
        try:
            info = await self.backend.read_device(self.cfg.name)
        except DeviceNotFound:
            self._vanished()
            self._set_failed(f"WireGuard interface {self.cfg.name} not found")
            return None
        except WireGuardError as exc:
            self.info = None
            self._set_failed(f"reading WireGuard interface {self.cfg.name}: {exc}")
            return None
        previous, self.info = self.info, info
        if not self.present:
            self._adopt()
        try:
            ifindex = socket.if_nametoindex(self.cfg.name)
        except OSError:
            ifindex = 0
        if self.present and ifindex and self.status.ifindex and ifindex != self.status.ifindex:
            log.info("device re-created iface=%s ifindex=%d", self.cfg.name, ifindex)
            self._vanished()
            self.info = info
            self._adopt()
            previous = None
        self.status.update(
            public_key=b64(info.public_key),
            listen_port=info.listen_port,
            fwmark=info.fwmark,
            # a dying wireguard-go still answers after its link is gone (no index): keep the
            # known index, or its successor would not be seen as a re-created device
            ifindex=ifindex or self.status.ifindex,
        )
        self.portmap.sync(self.cfg, info.listen_port)
        if previous is not None and (
            previous.listen_port,
            previous.fwmark,
            previous.public_key,
        ) != (info.listen_port, info.fwmark, info.public_key):
            log.info(
                "device changed iface=%s listen_port=%d fwmark=%d",
                self.cfg.name,
                info.listen_port,
                info.fwmark,
            )
            self._full_requested = True
            self._wake.set()
        return info

    def _adopt(self) -> None:
        """The interface exists (again): put it on the bus with a fresh object."""
        detached = self.status
        self.adopted_at = self.loop.time()
        self.status = self.engine.model.add_device(
            self.cfg.name, protocol=self.cfg.protocol, backend=self.backend.kind
        )
        self.discovery = Discovery()
        self._warned.clear()
        if not self._cycling:  # discover and publish before anything else
            self.trigger_full()
        log.info(
            "device adopted iface=%s backend=%s previous_error=%s",
            self.cfg.name,
            self.backend.kind,
            detached.last_error or "-",
        )

    def _vanished(self) -> None:
        """The interface is gone: drop its bus objects; keep what guards records."""
        self.info = None
        self.portmap.sync(self.cfg, None)  # its port is no longer WireGuard's
        if self.present:
            log.warning("device vanished iface=%s", self.cfg.name)
            for key in [*self.peers, *self.absent]:
                self._remove_peer(key)
            self.engine.model.remove_device(self.cfg.name)
        # it may come back driven by something else (wireguard-go vs the kernel)
        self.backend = self.engine.backend_factory(self.cfg.name)
        self.status = self._detached_status()

    def _set_failed(self, error: str) -> None:
        if self.status.last_error != error:
            log.warning("device failed iface=%s error=%s", self.cfg.name, error)
        self.status.update(state=DeviceState.FAILED, last_error=error)
        self.engine.update_manager_state()

    def update_config(self, cfg: InterfaceConfig) -> None:
        """Adopt a reloaded interface config; peers that did not change keep their state."""
        self.cfg = cfg
        self.status.update(protocol=cfg.protocol)
        configured = {p.public_key: p for p in cfg.peers.values()}
        for key in [*self.peers, *self.absent]:
            if key not in configured:
                self._remove_peer(key)
        for key, rt in self.peers.items():
            new = configured[key]
            if new != rt.cfg:
                self._reconfigure_peer(rt, new)
        for key, status in self.absent.items():
            new = configured[key]
            status.update(name=new.label, store=new.plugin, protocol=new.protocol)
        self._warned.clear()
        self._sync_disabled()
        self._full_requested = True
        self._wake.set()

    def _reconfigure_peer(self, rt: PeerRuntime, new: PeerConfig) -> None:
        rt.ping_resolve_after = float("-inf")  # the target may have changed
        if new.plugin != rt.cfg.plugin:
            rt.store = self.engine.store_for(new.plugin)
            if rt.watch is not None:
                rt.watch.cancel()  # re-established on the next sync, on the new store
        rt.cfg = new
        rt.status.update(
            name=new.label, store=new.plugin, protocol=new.protocol, description=new.description
        )

    def _sync_peers(self, info: DeviceInfo) -> None:
        """Manage the peers that are both configured and on the device; show configured peers
        the device lacks as NOT_ON_DEVICE (the same object moves on once WireGuard has them);
        warn about the rest."""
        configured = {p.public_key: p for p in self.cfg.peers.values()}
        for key in [*self.peers, *self.absent]:
            if key not in configured:
                self._remove_peer(key)
        for key, peer_cfg in configured.items():
            if key in info.peers and key not in self.peers:
                self._add_peer(peer_cfg)
            elif key not in info.peers and key not in self.absent:
                self._set_absent(peer_cfg)
        for key in info.peers:
            if key not in configured:
                self._warn_once(
                    f"extra:{b64(key)}",
                    "device peer is not in the config, leaving it alone iface=%s peer=%s",
                    self.cfg.name,
                    b64(key),
                )
        for rt in self.peers.values():
            self._ensure_watch(rt)
        self._sync_disabled()

    def _sync_disabled(self) -> None:
        """Peers the configuration disables are on the bus (while the device is) as DISABLED,
        with the reason in LastError: nothing is fetched, published or applied for them."""
        for label, status in list(self.disabled.items()):
            if not status.attached or not self.present or label not in self.cfg.disabled:
                if status.attached:
                    self.engine.model.remove_peer(self.status, _disabled_key(label))
                del self.disabled[label]
        if not self.present:
            return
        for label, peer in self.cfg.disabled.items():
            fields: dict[str, Any] = {
                "name": label,
                "public_key": b64(peer.public_key) if peer.public_key else "",
                "store": peer.plugin,
                "protocol": peer.protocol,
                "state": PeerState.DISABLED,
                "last_error": peer.reason,
            }
            status = self.disabled.get(label)
            if status is None:
                self.disabled[label] = self.engine.model.add_peer(
                    self.status, key=_disabled_key(label), **fields
                )
            else:
                status.update(**fields)

    def _warn_once(self, tag: str, msg: str, *args: Any) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            log.warning(msg, *args)

    def _set_absent(self, cfg: PeerConfig) -> None:
        """The interface lacks this configured peer: stop working on it, and say why."""
        reason = (
            f"not on WireGuard interface {self.cfg.name}: stunmeshd only sets endpoints of "
            "peers WireGuard already has (add it with wg set or the network configuration)"
        )
        self._warn_once(
            f"missing:{b64(cfg.public_key)}",
            "configured peer is not on the device, skipping iface=%s peer=%s",
            self.cfg.name,
            cfg.label,
        )
        rt = self.peers.pop(cfg.public_key, None)
        if rt is not None:
            for task in (rt.watch, rt.ping_task):
                if task is not None:
                    task.cancel()
        status = self.status.peers.get(b64(cfg.public_key))
        fields: dict[str, Any] = {
            "state": PeerState.NOT_ON_DEVICE,
            "last_error": reason,
            "endpoint": "",
            "latest_handshake": 0,
            "rx_bytes": 0,
            "tx_bytes": 0,
        }
        if status is None:
            status = self._new_peer_status(cfg, **fields)
        else:
            status.update(**fields)
        self.absent[cfg.public_key] = status

    def _new_peer_status(self, cfg: PeerConfig, **fields: Any) -> PeerStatus:
        """The Peer object of a configured peer (its bus object appears with it)."""
        return self.engine.model.add_peer(
            self.status,
            name=cfg.label,
            public_key=b64(cfg.public_key),
            store=cfg.plugin,
            protocol=cfg.protocol,
            description=cfg.description,
            **fields,
        )

    def _add_peer(self, cfg: PeerConfig) -> None:
        status = self.absent.pop(cfg.public_key, None)
        if status is None:
            status = self._new_peer_status(cfg)
        else:  # WireGuard gained the peer: the same object moves on, with a full cycle
            status.update(state=PeerState.UNKNOWN, last_error="")
            self._warned.discard(f"missing:{b64(cfg.public_key)}")
            self._full_requested = True
            self._wake.set()
        cap = max(self.engine.config.refresh_interval, FETCH_BACKOFF_START)
        self.peers[cfg.public_key] = PeerRuntime(
            guard=self._guards.setdefault(cfg.public_key, crypto.RecordGuard()),
            cfg=cfg,
            status=status,
            store=self.engine.store_for(cfg.plugin),
            fetch_backoff=Backoff(FETCH_BACKOFF_START, cap),
        )
        self._schedule_ping(self.peers[cfg.public_key])
        log.info(
            "peer added iface=%s peer=%s key=%s store=%s",
            self.cfg.name,
            cfg.label,
            status.public_key,
            cfg.plugin,
        )

    def _remove_peer(self, key: bytes) -> None:
        self.absent.pop(key, None)
        rt = self.peers.pop(key, None)
        if rt is not None:
            log.info(
                "peer no longer managed (WireGuard keeps it) iface=%s peer=%s",
                self.cfg.name,
                rt.cfg.label,
            )
            for task in (rt.watch, rt.ping_task):
                if task is not None:
                    task.cancel()
        self.engine.model.remove_peer(self.status, b64(key))

    def _ensure_watch(self, rt: PeerRuntime) -> None:
        """Follow the peer's record where the store can notify (OpenDHT listen)."""
        if self.info is None or not rt.store.capabilities.supports_watch:
            return
        key = crypto.fetch_key(self.info.public_key, rt.cfg.public_key)
        if rt.watch is not None and not rt.watch.done() and rt.watch_key == key:
            return
        if rt.watch is not None:
            rt.watch.cancel()
        rt.watch_key = key
        rt.watch = asyncio.create_task(
            self._follow(rt, key), name=f"watch-{self.cfg.name}-{rt.cfg.label}"
        )

    async def _follow(self, rt: PeerRuntime, key: str) -> None:
        """Re-fetch the peer as soon as it publishes; re-establish the watch with backoff."""
        backoff = Backoff(1.0, 60.0)
        while True:
            live = False  # the first wake of each watch only says it is live
            try:
                async for _ in cast(WatchableStore, rt.store).watch(key):
                    backoff.reset()
                    log.debug("peer republished iface=%s peer=%s", self.cfg.name, rt.cfg.label)
                    rt.watch_news, live = live, True
                    rt.next_fetch = rt.watch_woke_at = self.loop.time()
                    self._wake.set()
            except StoreError as exc:
                log.debug(
                    "watch failed iface=%s peer=%s error=%s", self.cfg.name, rt.cfg.label, exc
                )
            await asyncio.sleep(backoff.next())

    def remove_all(self) -> None:
        for key in [*self.peers, *self.absent]:
            self._remove_peer(key)
        self.engine.model.remove_device(self.cfg.name)

    # ---- discovery ---------------------------------------------------------------------

    async def _discover(self, *, classify: bool) -> Discovery:
        assert self.info is not None
        discovery = await discover(
            self.engine.stun_settings,
            port=self.info.listen_port,
            fwmark=self.info.fwmark,
            protocol=self.cfg.protocol,
            classify=classify,
        )
        self.last_discovery = self.loop.time()
        if not discovery.ok:
            self._set_failed(f"STUN failed: {discovery.error_text()}")
            return discovery
        if not classify:  # a warm-up keeps the last classification
            discovery = Discovery(discovery.endpoints, self.discovery.nat_mapping, discovery.errors)
        endpoints = tuple(
            discovery.endpoints[f] for f in ("ipv4", "ipv6") if f in discovery.endpoints
        )
        changed = endpoints != self.status.public_endpoints
        self.discovery = discovery
        self.status.update(public_endpoints=endpoints, nat_mapping=discovery.nat_mapping)
        if discovery.errors:
            log.warning(
                "discovery partly failed iface=%s %s", self.cfg.name, discovery.error_text()
            )
        if changed:
            log.info(
                "public endpoint iface=%s endpoints=%s nat=%s",
                self.cfg.name,
                ",".join(endpoints),
                discovery.nat_mapping,
            )
            self.engine.model.emit(EndpointChanged(self.status, endpoints))
        if discovery.nat_mapping.dependent:
            self._warn_once(
                f"nat:{discovery.nat_mapping}",
                "NAT mapping is %s (symmetric): peers cannot reach the port STUN "
                "discovered, a tunnel cannot form from STUN alone iface=%s",
                discovery.nat_mapping,
                self.cfg.name,
            )
        return discovery

    async def _rediscover(self) -> None:
        """Keep the NAT mapping warm; republish when it moved."""
        if await self._read_device() is None:
            return
        before = self.status.public_endpoints
        discovery = await self._discover(classify=False)
        log.debug(
            "rediscovered iface=%s endpoints=%s",
            self.cfg.name,
            ",".join(self.status.public_endpoints) or "-",
        )
        if discovery.ok and self.status.public_endpoints != before and self.info is not None:
            await self._publish_all(self.info)
            await asyncio.sleep(PUNCH_DELAY)
            await self._kick_unchanged(self.info)

    # ---- publish -----------------------------------------------------------------------

    async def _publish_all(
        self, info: DeviceInfo, runtimes: list[PeerRuntime] | None = None
    ) -> None:
        endpoints = await self.portmap.choose(self.discovery.endpoints, self.discovery.nat_mapping)
        record = crypto.EndpointRecord.stamped(
            ipv4=endpoints.get("ipv4"), ipv6=endpoints.get("ipv6")
        )
        plaintext = record.to_json()
        targets = list(self.peers.values()) if runtimes is None else runtimes
        await asyncio.gather(*(self._publish(rt, info, record, plaintext) for rt in targets))

    async def _publish(
        self, rt: PeerRuntime, info: DeviceInfo, record: crypto.EndpointRecord, plaintext: bytes
    ) -> None:
        rt.next_publish = None
        value = crypto.seal(plaintext, info.private_key, rt.cfg.public_key)
        limit = rt.store.capabilities.max_value_length
        if limit and len(value) > limit:
            value = seal_within(record, limit, info.private_key, rt.cfg.public_key)
            if len(value) > limit:
                self._warn_once(
                    f"long:{rt.cfg.plugin}",
                    "record of %d chars exceeds store %s's %d; stunmesh-go peers may not "
                    "read it (its own record would be as long) iface=%s",
                    len(value),
                    rt.cfg.plugin,
                    limit,
                    self.cfg.name,
                )
        key = crypto.publish_key(info.public_key, rt.cfg.public_key)
        try:
            written = await self.engine.store_call(
                rt.store, publish(rt.store, key, value, record.fingerprint)
            )
        except StoreError as exc:
            log.warning(
                "publish failed iface=%s peer=%s store=%s error=%s",
                self.cfg.name,
                rt.cfg.label,
                rt.cfg.plugin,
                exc,
            )
            rt.status.update(last_error=f"publish failed: {exc}")
            rt.next_publish = self.loop.time() + rt.publish_backoff.next()
            return
        rt.publish_backoff.reset()
        self._published = self.status.public_endpoints
        if written:
            rt.guard.note_published(value)
            log.debug("published iface=%s peer=%s key=%s", self.cfg.name, rt.cfg.label, key)

    async def _kick_unchanged(self, info: DeviceInfo) -> None:
        """Our endpoint moved: make WireGuard send to every peer now, from where we are.

        A peer whose endpoint did not change is not kicked by applying it, yet behind a NAT
        that filters by address and port our NAT drops what the peer sends to our new
        endpoint until we have sent to the peer from it; with nothing to send (the peer's
        traffic goes to our old port) that would wait for the next keepalive, up to 25 s.
        """
        moment = self.loop.time()
        for key, rt in self.peers.items():
            current = info.peers.get(key)
            if current is None or not current.endpoint:
                continue
            if rt.applied_at is not None and moment - rt.applied_at < PUNCH_DELAY:
                continue  # set just now, and kicked with it
            keepalive = current.persistent_keepalive or KICK_KEEPALIVE
            try:
                await self.backend.set_endpoint(
                    self.cfg.name, key, current.endpoint, keepalive=keepalive
                )
            except WireGuardError as exc:
                log.warning(
                    "kick failed iface=%s peer=%s error=%s", self.cfg.name, rt.cfg.label, exc
                )
                continue
            log.debug("kicked iface=%s peer=%s", self.cfg.name, rt.cfg.label)

    # ---- fetch and apply ---------------------------------------------------------------

    async def _serve_peers(self, keys: set[bytes], *, full: bool = False) -> None:
        requested = keys & self._peer_requests
        self._peer_requests -= keys
        waiters = [(k, w) for k, w in self._peer_waiters if k in keys]
        self._peer_waiters = [(k, w) for k, w in self._peer_waiters if k not in keys]
        if self.info is None and not full:
            await self._read_device()
        results: dict[bytes, CycleResult] = {}
        if self.info is not None:
            runtimes = [self.peers[k] for k in keys if k in self.peers]
            began = self.loop.time()
            outcomes = await asyncio.gather(*(self._fetch_and_apply(rt) for rt in runtimes))
            for rt in runtimes:
                if rt.watch_woke_at >= began:  # woken while reading: the read may predate it
                    rt.next_fetch = self.loop.time()
            results = {rt.cfg.public_key: res for rt, res in zip(runtimes, outcomes, strict=True)}
        for key, waiter in waiters:
            if not waiter.done():
                waiter.set_result(
                    results.get(
                        key,
                        CycleResult(
                            False, self.status.last_error or "peer not managed", DeviceNotFound
                        ),
                    )
                )
        if requested or results:
            self.next_poll = min(self.next_poll, self.loop.time() + POLL_FAST)

    async def _fetch_and_apply(self, rt: PeerRuntime) -> CycleResult:
        rt.next_fetch = None
        try:
            return await self._fetch_and_apply_once(rt)
        except StunmeshError as exc:
            cause = type(exc)
            error = str(exc)
        except Exception as exc:  # a bug in one peer must not take the others down
            log.exception("peer step failed iface=%s peer=%s", self.cfg.name, rt.cfg.label)
            cause, error = StunmeshError, f"internal error: {exc}"
        if rt.status.state == PeerState.CONNECTED:
            # the tunnel works: a store or record fault is news for LastError, not a state
            # change (else the next poll flips it back and logs a handshake every cycle)
            rt.status.update(last_error=error)
        else:
            rt.status.update(state=PeerState.FAILED, last_error=error)
        rt.next_fetch = self.loop.time() + rt.fetch_backoff.next()
        return CycleResult(False, error, cause)

    async def _fetch_and_apply_once(self, rt: PeerRuntime) -> CycleResult:
        assert self.info is not None
        info = self.info
        key = crypto.fetch_key(info.public_key, rt.cfg.public_key)
        news, rt.watch_news = rt.watch_news, False
        try:
            candidates = await self.engine.store_call(rt.store, _candidates(rt.store, key))
        except StoreError as exc:
            _noise.warning(
                log,
                f"fetch:{self.cfg.name}:{rt.cfg.plugin}",
                "fetch failed iface=%s peer=%s store=%s error=%s",
                self.cfg.name,
                rt.cfg.label,
                rt.cfg.plugin,
                exc,
            )
            raise StoreError(f"store {rt.cfg.plugin}: {exc}") from exc
        if not candidates:
            if rt.status.state != PeerState.CONNECTED:  # a working tunnel needs no record
                rt.status.update(state=PeerState.WAITING, last_error="")
            # the watch saw a value the read did not (the store was still spreading it)
            delay = WATCH_RECHECK if news else rt.fetch_backoff.next()
            rt.next_fetch = self.loop.time() + delay
            log.debug(
                "no record yet iface=%s peer=%s retry_in=%.1fs",
                self.cfg.name,
                rt.cfg.label,
                rt.next_fetch - self.loop.time(),
            )
            return CycleResult(True)
        record, endpoint = self._open_best(rt, candidates)
        fields: dict[str, Any] = {"discovered_endpoint": endpoint}
        if rt.status.state != PeerState.CONNECTED:  # a connected peer stays connected
            fields["state"] = PeerState.RESOLVED
        rt.status.update(**fields)
        await self._apply(rt, endpoint, record)
        return CycleResult(True)

    def _open_best(self, rt: PeerRuntime, values: list[str]) -> tuple[crypto.EndpointRecord, str]:
        """The newest candidate that opens, passes the guard and has an endpoint we can use.

        A store may hold several (OpenDHT keeps every put for 10 minutes). In-order records
        (the guard's word) win; an out-of-order one (a peer back on stunmesh-go, or a
        replay) is used only when none is in order, or when the in-order one names the
        endpoint that has had its handshake grace and still no live tunnel.
        """
        assert self.info is not None
        errors: list[str] = []
        best: tuple[crypto.EndpointRecord, str, str] | None = None
        fallback: tuple[crypto.EndpointRecord, str, str] | None = None
        # a family this host could not discover will not carry the tunnel either
        avoid = rt.avoided_families(self.loop.time()) | frozenset(self.discovery.errors)
        held = self.info.peers.get(rt.cfg.public_key)
        current = held.endpoint if held is not None and held.endpoint else ""
        live = held is not None and handshake_recent(held) and not rt.traffic.stalled
        for value in values:
            try:
                plaintext = crypto.open_sealed(value, self.info.private_key, rt.cfg.public_key)
                record = crypto.EndpointRecord.from_json(plaintext)
                in_order = rt.guard.check(
                    value,
                    record,
                    own_endpoints=self.status.public_endpoints,
                    current=current,
                    live=live,
                )
                endpoint = choose_endpoint(record, rt.cfg.protocol, avoid)
            except RecordError as exc:
                errors.append(str(exc))
                continue
            except Exception as exc:  # a value that trips a bug must not hide the others
                log.warning(
                    "record value failed to open iface=%s peer=%s error=%r",
                    self.cfg.name,
                    rt.cfg.label,
                    exc,
                )
                errors.append(f"internal error opening a value: {exc!r}")
                continue
            if not in_order:
                fallback = fallback or (record, endpoint, value)  # values come newest first
            elif best is None or (record.ts or -1) > (best[0].ts or -1):
                best = (record, endpoint, value)
        settled = rt.applied_at is None or self.loop.time() - rt.applied_at >= HANDSHAKE_GRACE
        if fallback is not None and (
            best is None or (not live and settled and best[1] == current and fallback[1] != current)
        ):
            best = fallback
        if best is None:
            error = "; ".join(dict.fromkeys(errors))
            _noise.warning(
                log,
                f"refused:{self.cfg.name}:{rt.cfg.label}:{error}",
                "record refused iface=%s peer=%s reason=%s",
                self.cfg.name,
                rt.cfg.label,
                error,
            )
            raise RecordError(f"record refused: {error}")
        rt.guard.accept(best[0], best[2])
        return best[0], best[1]

    async def _apply(self, rt: PeerRuntime, endpoint: str, record: crypto.EndpointRecord) -> None:
        assert self.info is not None
        if await self.portmap.hold_back(endpoint, self.info.peers.get(rt.cfg.public_key)):
            if await self._read_device() is None:  # the peer may have reached us meanwhile
                return
        current = self.info.peers.get(rt.cfg.public_key)
        recent = current is not None and handshake_recent(current) and not rt.traffic.stalled
        if current is not None and current.endpoint == endpoint:
            self._note_connection(rt, current)
            if rt.status.state == PeerState.RESOLVED:
                rt.status.update(state=PeerState.APPLIED)
            rt.status.update(endpoint=endpoint, last_error="")
            self._after_apply(rt)
            return
        if (
            current is not None
            and recent
            and current.endpoint
            and (record.ts is None or record.ts / 1000 < current.latest_handshake)
        ):
            log.info(
                "keeping roamed endpoint iface=%s peer=%s wireguard=%s record=%s",
                self.cfg.name,
                rt.cfg.label,
                current.endpoint,
                endpoint,
            )
            rt.status.update(endpoint=current.endpoint, last_error="")
            self._note_connection(rt, current)
            self._after_apply(rt)
            return
        # Kick on every change: WireGuard then sends at once, a handshake initiation, or on a
        # live session a keepalive that opens our NAT towards the peer's new endpoint.
        keepalive = (
            current.persistent_keepalive
            if current and current.persistent_keepalive
            else KICK_KEEPALIVE
        )
        if current is not None and not current.latest_handshake and not current.endpoint:
            # never connected and no endpoint yet: WireGuard may already have tried (and now
            # holds its next try back for 5 s); a re-created peer handshakes at once
            await self.backend.reset_peer(self.cfg.name, current, endpoint, keepalive)
            if self.info.public_key < rt.cfg.public_key:  # the peer's side does not check
                rt.next_collision_check = self.loop.time() + COLLISION_CHECK
        else:
            await self.backend.set_endpoint(
                self.cfg.name, rt.cfg.public_key, endpoint, keepalive=keepalive
            )
        if current is not None:  # what WireGuard holds now, until the next read
            self.info = self.info.with_peer(
                replace(
                    current,
                    endpoint=endpoint,
                    persistent_keepalive=keepalive or current.persistent_keepalive,
                )
            )
        rt.applied_at = self.loop.time()
        rt.status.update(
            state=PeerState.APPLIED, endpoint=endpoint, last_update=now_us(), last_error=""
        )
        log.info(
            "endpoint applied iface=%s peer=%s endpoint=%s", self.cfg.name, rt.cfg.label, endpoint
        )
        self._after_apply(rt)

    async def _recreate_silent(self, runtimes: list[PeerRuntime]) -> None:
        """Re-create peers that still have no handshake a moment after their first endpoint.

        Both sides sending their first handshake initiation at the same moment (two daemons
        that got each other's record together) makes each answer the other's and refuse the
        answer to its own; WireGuard tries again only 5 s later. A fresh initiation from one
        side (the lower key's, so the two never collide again) completes at once.
        """
        for rt in runtimes:
            rt.next_collision_check = None
        info = await self._read_device()
        if info is None:
            return
        for rt in runtimes:
            current = info.peers.get(rt.cfg.public_key)
            if current is None or current.latest_handshake or not current.endpoint:
                continue
            keepalive = current.persistent_keepalive or KICK_KEEPALIVE
            try:
                await self.backend.reset_peer(self.cfg.name, current, current.endpoint, keepalive)
            except WireGuardError as exc:
                log.warning(
                    "re-creating peer failed iface=%s peer=%s error=%s",
                    self.cfg.name,
                    rt.cfg.label,
                    exc,
                )
                continue
            log.info(
                "silent peer re-created for a fresh initiation iface=%s peer=%s",
                self.cfg.name,
                rt.cfg.label,
            )

    def _after_apply(self, rt: PeerRuntime) -> None:
        """Keep re-fetching a peer with backoff until its handshake shows the tunnel is up."""
        if rt.status.state == PeerState.CONNECTED:
            rt.fetch_backoff.reset()
            rt.next_fetch = None
        else:
            rt.next_fetch = self.loop.time() + rt.fetch_backoff.next()

    # ---- polling WireGuard -------------------------------------------------------------

    async def _poll(self) -> None:
        """Read handshakes and counters; say when a tunnel did not form and why."""
        info = await self._read_device()
        if info is None:
            self.next_poll = self.loop.time() + POLL_SLOW
            self.next_full = min(self.next_full, self.loop.time() + self.device_backoff.next())
            return
        self._sync_peers(info)
        awaiting = False
        now = self.loop.time()
        for key, rt in self.peers.items():
            current = info.peers.get(key)
            if current is None:
                continue
            if rt.traffic.observe(current.rx_bytes, current.tx_bytes, now):
                self._path_broken(
                    rt,
                    f"nothing received from the peer for "
                    f"{rt.traffic.stall_after:.0f} s while sending",
                )
            self._note_connection(rt, current)
            if rt.status.state == PeerState.APPLIED and rt.applied_at is not None:
                if now - rt.applied_at < HANDSHAKE_GRACE:
                    awaiting = True
                else:
                    rt.status.update(
                        state=PeerState.FAILED, last_error=self._no_handshake_reason(rt)
                    )
                    rt.endpoint_failed(now)
                    if len(rt.avoided_families(now)) < 2 and rt.cfg.protocol.startswith("prefer_"):
                        rt.next_fetch = now  # try the other family at once
                    log.warning(
                        "no handshake iface=%s peer=%s reason=%s",
                        self.cfg.name,
                        rt.cfg.label,
                        rt.status.last_error,
                    )
                    self.portmap.path_broken(
                        f"peer {rt.cfg.label}: no handshake", rt.status.endpoint
                    )
        busy = any(rt.traffic.busy for rt in self.peers.values())
        fast = awaiting or self._peers_expected(info)
        self.next_poll = now + (POLL_FAST if fast else POLL_BUSY if busy else POLL_SLOW)

    def _peers_expected(self, info: DeviceInfo) -> bool:
        """Configured peers are missing from a device that appeared a moment ago.

        Whoever makes an interface adds its peers right after creating it, and we may read it
        in between; nothing signals the peers' arrival, so we look every second for a while.
        """
        if self.loop.time() - self.adopted_at >= PEER_WAIT:
            return False
        return any(key not in info.peers for key in (p.public_key for p in self.cfg.peers.values()))

    def _note_connection(self, rt: PeerRuntime, current: PeerInfo) -> None:
        fields: dict[str, Any] = {
            "latest_handshake": int(current.latest_handshake * 1_000_000),
            "rx_bytes": current.rx_bytes,
            "tx_bytes": current.tx_bytes,
        }
        if current.endpoint:
            fields["endpoint"] = current.endpoint
        if handshake_recent(current) and not rt.traffic.stalled:
            if rt.status.state != PeerState.CONNECTED:
                log.info(
                    "handshake iface=%s peer=%s endpoint=%s",
                    self.cfg.name,
                    rt.cfg.label,
                    current.endpoint,
                )
                rt.fetch_backoff.reset()
                rt.next_fetch = None
            fields.update(state=PeerState.CONNECTED, last_error="")
        elif rt.status.state == PeerState.CONNECTED:
            fields["state"] = PeerState.APPLIED  # went stale: re-fetch soon
            rt.applied_at = self.loop.time()
            rt.next_fetch = self.loop.time()
        rt.status.update(**fields)

    def _path_broken(self, rt: PeerRuntime, reason: str) -> None:
        """The tunnel stopped working: re-check our mapping and the peer's record at once."""
        log.warning("path broken iface=%s peer=%s reason=%s", self.cfg.name, rt.cfg.label, reason)
        now = self.loop.time()
        rt.endpoint_failed(now)
        rt.status.update(state=PeerState.APPLIED, last_error=reason)
        rt.applied_at = now
        rt.fetch_backoff.reset()
        rt.next_fetch = now
        self.portmap.path_broken(f"peer {rt.cfg.label}: {reason}", rt.status.endpoint)
        self.request_rediscover()

    def _schedule_ping(self, rt: PeerRuntime, *, soon: bool = False) -> None:
        settings = self.engine.config.ping_monitor
        if rt.cfg.ping.enabled and rt.cfg.ping.target:
            interval = rt.cfg.ping.interval or settings.interval  # per peer first
            rt.next_ping = self.loop.time() + (0.0 if soon else interval)
            self._wake.set()  # the loop's next deadline may now be this one
        else:
            rt.next_ping = None

    async def _ping_checked(self, rt: PeerRuntime) -> None:
        """A ping check in its task: a bug in one is said and the monitor goes on."""
        try:
            await self._ping(rt)
        except Exception:
            log.exception("ping check failed iface=%s peer=%s", self.cfg.name, rt.cfg.label)
            self._schedule_ping(rt)

    async def _ping(self, rt: PeerRuntime) -> None:
        """stunmesh-go's ping monitor: fixed_retries failed pings in a row = broken path."""
        settings = self.engine.config.ping_monitor
        timeout = rt.cfg.ping.timeout or settings.timeout
        mark = self.info.fwmark if self.info else 0
        try:
            address = await self._ping_address(rt)
        except (OSError, TimeoutError) as exc:
            # a name that does not resolve leaves the peer unmonitored, as in stunmesh-go
            self._warn_once(
                f"resolve:{rt.cfg.label}",
                "ping target does not resolve, not monitoring iface=%s peer=%s target=%s error=%s",
                self.cfg.name,
                rt.cfg.label,
                rt.cfg.ping.target,
                exc or type(exc).__name__,
            )
            self._schedule_ping(rt)
            return
        try:
            ok = await ping(address, timeout, mark=mark)
        except OSError as exc:
            log.warning(
                "ping failed to run iface=%s peer=%s error=%s", self.cfg.name, rt.cfg.label, exc
            )
            ok = False
        self._schedule_ping(rt)
        if ok:
            rt.ping_failures = 0
            return
        rt.ping_failures += 1
        if rt.ping_failures == settings.fixed_retries and rt.status.state in (
            PeerState.CONNECTED,
            PeerState.APPLIED,
        ):
            self._path_broken(
                rt, f"{rt.ping_failures} pings to {rt.cfg.ping.target} went unanswered"
            )

    async def _ping_address(self, rt: PeerRuntime) -> str:
        """ping.target as an address; a host name is looked up again after PING_RESOLVE_TTL
        (after PING_RESOLVE_RETRY when the lookup failed). Raises OSError or TimeoutError."""
        now = self.loop.time()
        if now >= rt.ping_resolve_after:
            rt.ping_address = ""
            rt.ping_resolve_after = now + PING_RESOLVE_RETRY
            rt.ping_address = await resolve_ping_target(rt.cfg.ping.target, PING_RESOLVE_TIMEOUT)
            rt.ping_resolve_after = now + PING_RESOLVE_TTL
            self._warned.discard(f"resolve:{rt.cfg.label}")
        if not rt.ping_address:
            raise OSError("the last lookup failed")
        return rt.ping_address

    def _no_handshake_reason(self, rt: PeerRuntime) -> str:
        mapping = self.discovery.nat_mapping
        reason = f"no handshake {HANDSHAKE_GRACE:.0f} s after setting endpoint {rt.status.endpoint}"
        family = "ipv6" if rt.status.endpoint.startswith("[") else "ipv4"
        if family in self.discovery.errors:
            return (
                f"{reason}: this host has no working {family} path "
                f"({self.discovery.errors[family]})"
            )
        if mapping.dependent:
            return (
                f"{reason}: this host's NAT mapping is {mapping} (symmetric), so the "
                "peer cannot reach the port STUN discovered; the tunnel cannot form by "
                "STUN alone"
            )
        return f"{reason}: the peer may be behind a symmetric NAT or a firewall, or not running"


def _disabled_key(label: str) -> str:
    """A disabled peer's place in DeviceStatus.peers: its key may be invalid or another's."""
    return f"disabled:{label}"


def handshake_recent(peer: PeerInfo) -> bool:
    return peer.latest_handshake > 0 and time.time() - peer.latest_handshake < RECENT_HANDSHAKE


def choose_endpoint(
    record: crypto.EndpointRecord, protocol: str, avoid: frozenset[str] = frozenset()
) -> str:
    """Pick the record's endpoint for a peer's ``protocol``.

    The ``prefer_*`` forms fall back to the other family when the record lacks the preferred
    one, or when the preferred one's path was just found broken (``avoid``).
    """
    order = {
        "ipv4": ("ipv4",),
        "ipv6": ("ipv6",),
        "prefer_ipv4": ("ipv4", "ipv6"),
        "prefer_ipv6": ("ipv6", "ipv4"),
    }.get(protocol, ("ipv4",))
    usable = [f for f in order if getattr(record, f)]
    if len(usable) > 1:
        usable = [f for f in usable if f not in avoid] or usable
    for family in usable:
        endpoint = getattr(record, family)
        if endpoint:
            return str(endpoint)
    raise RecordError(
        f"peer asks for {protocol} but its record has no {' or '.join(order)} endpoint"
    )


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


def store_timeout(store: Store, plugin: PluginConfig | None) -> float:
    """The store's own time limit per operation (it knows its default), else the config's."""
    own = getattr(store, "timeout", None)
    if isinstance(own, int | float) and not isinstance(own, bool) and own > 0:
        return float(own)
    if plugin is not None and plugin.timeout is not None:
        return plugin.timeout
    return DEFAULT_STORE_TIMEOUT


async def _candidates(store: Store, key: str) -> list[str]:
    """All values under ``key`` worth trying, best first (OpenDHT may hold several)."""
    if store.capabilities.get_all:
        return [data for _ts, data in await cast(MultiValueStore, store).get_all(key)]
    value = await store.get(key)
    return [value] if value else []


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
    ) -> None:
        from stunmeshd.stores.registry import create_store
        from stunmeshd.wireguard import backend_for

        self.config = config
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
                worker = self.workers.pop(ifname)
                await worker.stop()
                worker.remove_all()
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
                worker.device_backoff.reset()
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

    def cycle_interval(self, peers: Any) -> float:
        """The refresh interval, shortened to what the stores' record lifetimes demand."""
        interval = self.config.refresh_interval
        for rt in peers:
            republish = rt.store.capabilities.republish_interval
            if republish:
                interval = min(interval, float(republish))
        return interval

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


__all__ = ["CycleResult", "DeviceWorker", "Engine", "choose_endpoint"]
