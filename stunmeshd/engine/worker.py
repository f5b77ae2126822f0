"""One device's worker: a loop that sleeps until the Schedule's next deadline or a request,
then runs what is due. It does the device I/O and asks the others: ``peers`` (which peers),
``publisher`` (our endpoint), ``fetcher`` (theirs), ``monitor`` (are tunnels up),
``schedule`` (when), ``decisions`` (what)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

from stunmeshd.config import InterfaceConfig
from stunmeshd.discovery import Discovery
from stunmeshd.errors import DeviceNotFound, StunError, WireGuardError
from stunmeshd.model import DeviceState, DeviceStatus, PeerState, RefreshCompleted
from stunmeshd.portmap.device import DevicePortMap
from stunmeshd.wireguard.base import DeviceInfo

from .fetcher import Fetcher
from .monitor import Monitor
from .peers import PeerSet
from .publisher import Publisher
from .runtime import CycleResult, PeerRuntime, b64, log
from .schedule import Schedule

if TYPE_CHECKING:
    from .manager import Engine


class DeviceWorker:
    """Keeps one WireGuard interface's endpoint published and its peers' endpoints applied."""

    def __init__(self, engine: Engine, cfg: InterfaceConfig) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = engine.clock
        self.loop = asyncio.get_running_loop()
        self.backend = engine.backend_factory(cfg.name)
        # Detached until the device is seen: a Device object exists on the bus only while the
        # interface does, and a re-created interface gets a fresh object (and number).
        self.status = self._detached_status()
        self.info: DeviceInfo | None = None
        self.schedule = Schedule()
        self.peerset = PeerSet(self)
        self.peers: dict[bytes, PeerRuntime] = self.peerset.peers
        self.publisher = Publisher(self)
        self.fetcher = Fetcher(self)
        self.monitor = Monitor(self)
        self._wake = asyncio.Event()
        self._full_requested = True
        self._waiters: list[asyncio.Future[CycleResult]] = []
        self._warned: set[str] = set()
        self.task: asyncio.Task[None] | None = None
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

    @property
    def discovery(self) -> Discovery:
        return self.publisher.discovery

    def now_us(self) -> int:
        return int(self.clock.wall() * 1_000_000)

    def warn_once(self, tag: str, msg: str, *args: Any) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            log.warning(msg, *args)

    def forget_warning(self, tag: str) -> None:
        self._warned.discard(tag)

    # ---- requests ----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_full(self) -> asyncio.Future[CycleResult]:
        """Ask for a full cycle; requests made while one is pending share it."""
        waiter: asyncio.Future[CycleResult] = self.loop.create_future()
        self._waiters.append(waiter)
        self.trigger_full()
        return waiter

    def trigger_full(self) -> None:
        """Ask for a full cycle without waiting for it."""
        self._full_requested = True
        self._wake.set()

    def request_rediscover(self) -> None:
        """The host's addresses or routes changed: re-run STUN now (bursts coalesce)."""
        self.schedule.request_rediscover()
        self._wake.set()
        self.portmap.network_changed("addresses or routes changed")

    def request_peer(self, public_key: bytes) -> asyncio.Future[CycleResult]:
        waiter: asyncio.Future[CycleResult] = self.loop.create_future()
        self.fetcher.request(public_key, waiter)
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
        await self.peerset.stop_tasks()
        for waiter in self._waiters + [f for _, f in self.fetcher.waiters]:
            if not waiter.done():
                waiter.set_result(CycleResult(False, "daemon stopping"))

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            deadline = self.schedule.next_deadline(warming=self._warming())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), max(0.0, deadline - self.clock.monotonic())
                )
            self._wake.clear()
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not kill the worker; say so and go on
                log.exception("device step failed iface=%s", self.cfg.name)
                self.status.update(state=DeviceState.FAILED, last_error=f"internal error: {exc}")
                self.schedule.retry_device(self.clock.monotonic())

    def _warming(self) -> bool:
        """The mapping is kept warm while a peer lacks a handshake."""
        return self.discovery.ok and any(
            rt.status.state != PeerState.CONNECTED for rt in self.peers.values()
        )

    async def _step(self) -> None:
        sched, now = self.schedule, self.clock.monotonic()
        if self._full_requested or sched.full_due(now):
            await self._full_cycle()
            return
        if sched.rediscover_due(now, warming=self._warming()):
            await self.publisher.rediscover()
        due = sched.fetch_due(now) | self.fetcher.requests
        retry_keys = sched.publish_due(now)
        retry = [rt for key, rt in self.peers.items() if key in retry_keys]
        if retry and self.info is not None and self.discovery.ok:
            await self.publisher.publish_all(self.info, retry)
        collided = sched.collision_due(now)
        if collided:
            await self.fetcher.recreate_silent(
                [rt for k, rt in self.peers.items() if k in collided]
            )
        if due:
            await self.fetcher.serve(due)
        if sched.poll_due(self.clock.monotonic()):
            await self.monitor.poll()
        self.monitor.start_pings()

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
        began = self.clock.monotonic()
        info = await self.read_device()
        if info is None:
            self.schedule.retry_device(self.clock.monotonic())
            return CycleResult(False, self.status.last_error, DeviceNotFound)
        self.peerset.sync(info)
        self.status.update(state=DeviceState.DISCOVERING)
        discovery = await self.publisher.discover(classify=True)
        result, moved = CycleResult(True), False
        if discovery.ok:
            self.status.update(state=DeviceState.PUBLISHING)
            moved = self.publisher.moved
            await self.publisher.publish_all(info)
            if moved:
                await self.publisher.wait_for_kick()
        else:
            result = CycleResult(False, self.status.last_error, StunError)
        await self.fetcher.serve(set(self.peers), full=True)
        if self.monitor.peers_expected(info):
            self.schedule.poll_soon(self.clock.monotonic())
        if moved:
            await self.publisher.kick_unchanged(info)
        interval = self.schedule.cycle_done(
            self.clock.monotonic(),
            self.engine.cycle_interval(self.peers.values()),
            discovered=discovery.ok,
        )
        if discovery.ok:
            self.status.update(state=DeviceState.READY, last_error="")
        now_us = self.now_us()
        self.status.update(last_refresh=now_us, next_refresh=now_us + int(interval * 1e6))
        log.info(
            "refresh done iface=%s ok=%s endpoints=%s peers=%d took=%.3fs next_in=%.0fs",
            self.cfg.name,
            result.ok,
            ",".join(self.status.public_endpoints) or "-",
            len(self.peers),
            self.clock.monotonic() - began,
            interval,
        )
        return result

    # ---- the device itself -------------------------------------------------------------

    async def read_device(self) -> DeviceInfo | None:
        try:
            info = await self.backend.read_device(self.cfg.name)
        except DeviceNotFound:
            self._vanished()
            self.set_failed(f"WireGuard interface {self.cfg.name} not found")
            return None
        except WireGuardError as exc:
            self.info = None
            self.set_failed(f"reading WireGuard interface {self.cfg.name}: {exc}")
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
        ) != (
            info.listen_port,
            info.fwmark,
            info.public_key,
        ):
            log.info(
                "device changed iface=%s listen_port=%d fwmark=%d",
                self.cfg.name,
                info.listen_port,
                info.fwmark,
            )
            self.trigger_full()
        return info

    def _adopt(self) -> None:
        """The interface exists (again): put it on the bus with a fresh object."""
        detached = self.status
        self.schedule.adopted(self.clock.monotonic())
        self.status = self.engine.model.add_device(
            self.cfg.name, protocol=self.cfg.protocol, backend=self.backend.kind
        )
        self.publisher.discovery = Discovery()
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
            self.peerset.remove_all()
            self.engine.model.remove_device(self.cfg.name)
        # it may come back driven by something else (wireguard-go vs the kernel)
        self.backend = self.engine.backend_factory(self.cfg.name)
        self.status = self._detached_status()

    def set_failed(self, error: str) -> None:
        if self.status.last_error != error:
            log.warning("device failed iface=%s error=%s", self.cfg.name, error)
        self.status.update(state=DeviceState.FAILED, last_error=error)
        self.engine.update_manager_state()

    def update_config(self, cfg: InterfaceConfig) -> None:
        """Adopt a reloaded interface config; peers that did not change keep their state."""
        self.cfg = cfg
        self.status.update(protocol=cfg.protocol)
        self.peerset.update_config(cfg)
        self._warned.clear()
        self.trigger_full()

    def remove_all(self) -> None:
        self.peerset.remove_all()
        self.engine.model.remove_device(self.cfg.name)
