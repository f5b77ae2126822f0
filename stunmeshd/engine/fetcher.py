"""The peers' side of a device: fetch each peer's record, open and judge it, apply the endpoint
to WireGuard (``decisions`` says what applying means, ``Schedule`` when to try again)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, cast

from stunmeshd import crypto
from stunmeshd.errors import DeviceNotFound, RecordError, StoreError, StunmeshError, WireGuardError
from stunmeshd.model import PeerState
from stunmeshd.stores.base import MultiValueStore, Store

from .decisions import (
    Apply,
    Candidate,
    apply_action,
    checks_collision,
    choose_endpoint,
    kick_keepalive,
    pick_record,
    still_silent,
    tunnel_live,
)
from .runtime import CycleResult, PeerRuntime, log, noise

if TYPE_CHECKING:
    from stunmeshd.config import InterfaceConfig
    from stunmeshd.discovery import Discovery
    from stunmeshd.model import DeviceStatus
    from stunmeshd.portmap.device import DevicePortMap
    from stunmeshd.wireguard.base import DeviceInfo, WireGuardBackend

    from .clock import Clock
    from .manager import Engine
    from .monitor import Monitor
    from .schedule import Schedule


async def _candidates(store: Store, key: str) -> list[str]:
    """All values under ``key`` worth trying, best first (OpenDHT may hold several)."""
    if store.capabilities.get_all:
        return [data for _ts, data in await cast(MultiValueStore, store).get_all(key)]
    value = await store.get(key)
    return [value] if value else []


class FetchHost(Protocol):
    """What fetching and applying needs from the device's worker."""

    cfg: InterfaceConfig
    info: DeviceInfo | None
    status: DeviceStatus
    peers: dict[bytes, PeerRuntime]
    schedule: Schedule
    clock: Clock
    engine: Engine
    backend: WireGuardBackend
    portmap: DevicePortMap
    monitor: Monitor

    @property
    def discovery(self) -> Discovery: ...

    async def read_device(self) -> DeviceInfo | None: ...

    def now_us(self) -> int: ...


class Fetcher:
    """Fetch and apply for one device's peers; answers per-peer Refresh requests."""

    def __init__(self, worker: FetchHost) -> None:
        self.w = worker
        self.requests: set[bytes] = set()
        self.waiters: list[tuple[bytes, asyncio.Future[CycleResult]]] = []

    def request(self, key: bytes, waiter: asyncio.Future[CycleResult]) -> None:
        self.waiters.append((key, waiter))
        self.requests.add(key)

    async def serve(self, keys: set[bytes], *, full: bool = False) -> None:
        w = self.w
        requested = keys & self.requests
        self.requests -= keys
        waiters = [(k, f) for k, f in self.waiters if k in keys]
        self.waiters = [(k, f) for k, f in self.waiters if k not in keys]
        if w.info is None and not full:
            await w.read_device()
        results: dict[bytes, CycleResult] = {}
        if w.info is not None:
            runtimes = [w.peers[k] for k in keys if k in w.peers]
            began = w.clock.monotonic()
            outcomes = await asyncio.gather(*(self._fetch_and_apply(rt) for rt in runtimes))
            for rt in runtimes:
                w.schedule.reread_if_woken(rt.key, began, w.clock.monotonic())
            results = {rt.key: res for rt, res in zip(runtimes, outcomes, strict=True)}
        for key, waiter in waiters:
            if not waiter.done():
                waiter.set_result(
                    results.get(
                        key,
                        CycleResult(
                            False, w.status.last_error or "peer not managed", DeviceNotFound
                        ),
                    )
                )
        if requested or results:
            w.schedule.poll_soon(w.clock.monotonic())

    async def _fetch_and_apply(self, rt: PeerRuntime) -> CycleResult:
        w = self.w
        w.schedule.fetch_started(rt.key)
        try:
            return await self._fetch_and_apply_once(rt)
        except StunmeshError as exc:
            cause = type(exc)
            error = str(exc)
        except Exception as exc:  # a bug in one peer must not take the others down
            log.exception("peer step failed iface=%s peer=%s", w.cfg.name, rt.cfg.label)
            cause, error = StunmeshError, f"internal error: {exc}"
        if rt.status.state == PeerState.CONNECTED:
            # the tunnel works: a store or record fault is news for LastError, not a state
            # change (else the next poll flips it back and logs a handshake every cycle)
            rt.status.update(last_error=error)
        else:
            rt.status.update(state=PeerState.FAILED, last_error=error)
        self._refetch_later(rt)
        return CycleResult(False, error, cause)

    def _refetch_later(self, rt: PeerRuntime, *, news: bool = False) -> float:
        w = self.w
        now = w.clock.monotonic()
        return w.schedule.refetch_later(rt.key, now, news=news) - now

    async def _fetch_and_apply_once(self, rt: PeerRuntime) -> CycleResult:
        w = self.w
        assert w.info is not None
        key = crypto.fetch_key(w.info.public_key, rt.cfg.public_key)
        news, rt.watch_news = rt.watch_news, False
        try:
            candidates = await w.engine.store_call(rt.store, _candidates(rt.store, key))
        except StoreError as exc:
            noise.warning(
                log,
                f"fetch:{w.cfg.name}:{rt.cfg.plugin}",
                "fetch failed iface=%s peer=%s store=%s error=%s",
                w.cfg.name,
                rt.cfg.label,
                rt.cfg.plugin,
                exc,
            )
            raise StoreError(f"store {rt.cfg.plugin}: {exc}") from exc
        if not candidates:
            if rt.status.state != PeerState.CONNECTED:  # a working tunnel needs no record
                rt.status.update(state=PeerState.WAITING, last_error="")
            # the watch saw a value the read did not (the store was still spreading it)
            retry_in = self._refetch_later(rt, news=news)
            log.debug(
                "no record yet iface=%s peer=%s retry_in=%.1fs", w.cfg.name, rt.cfg.label, retry_in
            )
            return CycleResult(True)
        record, endpoint = self._open_best(rt, candidates)
        if rt.status.discovered_endpoint and endpoint != rt.status.discovered_endpoint:
            w.portmap.peer_moved(rt.cfg.label, endpoint)  # it came back, or its network changed
        fields: dict[str, Any] = {"discovered_endpoint": endpoint}
        if rt.status.state != PeerState.CONNECTED:  # a connected peer stays connected
            fields["state"] = PeerState.RESOLVED
        rt.status.update(**fields)
        await self._apply(rt, endpoint, record)
        return CycleResult(True)

    def _open_best(self, rt: PeerRuntime, values: list[str]) -> tuple[crypto.EndpointRecord, str]:
        """The newest candidate that opens, passes the guard and has an endpoint we can use
        (``decisions.pick_record``). A store may hold several (OpenDHT keeps every put for 10
        minutes)."""
        w = self.w
        assert w.info is not None
        now = w.clock.monotonic()
        errors: list[str] = []
        opened: list[Candidate] = []
        # a family this host could not discover will not carry the tunnel either
        avoid = w.schedule.avoided_families(rt.key, now) | frozenset(w.discovery.errors)
        held = w.info.peers.get(rt.cfg.public_key)
        current = held.endpoint if held is not None and held.endpoint else ""
        live = held is not None and tunnel_live(
            held, stalled=rt.traffic.stalled, now=w.clock.wall()
        )
        for value in values:
            try:
                plaintext = crypto.open_sealed(value, w.info.private_key, rt.cfg.public_key)
                record = crypto.EndpointRecord.from_json(plaintext)
                in_order = rt.guard.check(
                    value,
                    record,
                    own_endpoints=w.status.public_endpoints,
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
                    w.cfg.name,
                    rt.cfg.label,
                    exc,
                )
                errors.append(f"internal error opening a value: {exc!r}")
                continue
            opened.append(Candidate(record, endpoint, value, in_order))
        best = pick_record(
            opened, current=current, live=live, settled=w.schedule.settled(rt.key, now)
        )
        if best is None:
            error = "; ".join(dict.fromkeys(errors))
            noise.warning(
                log,
                f"refused:{w.cfg.name}:{rt.cfg.label}:{error}",
                "record refused iface=%s peer=%s reason=%s",
                w.cfg.name,
                rt.cfg.label,
                error,
            )
            raise RecordError(f"record refused: {error}")
        rt.guard.accept(best.record, best.value)
        return best.record, best.endpoint

    async def _apply(self, rt: PeerRuntime, endpoint: str, record: crypto.EndpointRecord) -> None:
        w = self.w
        assert w.info is not None
        if await w.portmap.hold_back(endpoint, w.info.peers.get(rt.cfg.public_key)):
            if await w.read_device() is None:  # the peer may have reached us meanwhile
                return
        current = w.info.peers.get(rt.cfg.public_key)
        live = current is not None and tunnel_live(
            current, stalled=rt.traffic.stalled, now=w.clock.wall()
        )
        action = apply_action(current, endpoint, record.ts, live=live)
        if action is Apply.KEEP:
            assert current is not None
            w.monitor.note_connection(rt, current)
            if rt.status.state == PeerState.RESOLVED:
                rt.status.update(state=PeerState.APPLIED)
            rt.status.update(endpoint=endpoint, last_error="")
            self._after_apply(rt)
            return
        if action is Apply.ROAMED:
            assert current is not None and current.endpoint
            log.info(
                "keeping roamed endpoint iface=%s peer=%s wireguard=%s record=%s",
                w.cfg.name,
                rt.cfg.label,
                current.endpoint,
                endpoint,
            )
            rt.status.update(endpoint=current.endpoint, last_error="")
            w.monitor.note_connection(rt, current)
            self._after_apply(rt)
            return
        # Kick on every change: WireGuard then sends at once, a handshake initiation, or on a
        # live session a keepalive that opens our NAT towards the peer's new endpoint.
        keepalive = kick_keepalive(current)
        if action is Apply.RECREATE:
            assert current is not None
            await w.backend.reset_peer(w.cfg.name, current, endpoint, keepalive)
            if checks_collision(w.info.public_key, rt.key):  # the peer's side does not check
                w.schedule.collision_check(rt.key, w.clock.monotonic())
        else:
            await w.backend.set_endpoint(
                w.cfg.name, rt.cfg.public_key, endpoint, keepalive=keepalive
            )
        if current is not None:  # what WireGuard holds now, until the next read
            w.info = w.info.with_peer(
                replace(
                    current,
                    endpoint=endpoint,
                    persistent_keepalive=keepalive or current.persistent_keepalive,
                )
            )
        w.schedule.applied(rt.key, w.clock.monotonic())
        rt.status.update(
            state=PeerState.APPLIED, endpoint=endpoint, last_update=w.now_us(), last_error=""
        )
        log.info(
            "endpoint applied iface=%s peer=%s endpoint=%s", w.cfg.name, rt.cfg.label, endpoint
        )
        self._after_apply(rt)

    async def recreate_silent(self, runtimes: list[PeerRuntime]) -> None:
        """Re-create peers that still have no handshake a moment after their first endpoint.

        Both sides sending their first handshake initiation at the same moment (two daemons
        that got each other's record together) makes each answer the other's and refuse the
        answer to its own; WireGuard tries again only 5 s later. A fresh initiation from one
        side (the lower key's, so the two never collide again) completes at once.
        """
        w = self.w
        for rt in runtimes:
            w.schedule.collision_checked(rt.key)
        info = await w.read_device()
        if info is None:
            return
        for rt in runtimes:
            current = info.peers.get(rt.cfg.public_key)
            if not still_silent(current):
                continue
            assert current is not None and current.endpoint  # still_silent says so
            try:
                await w.backend.reset_peer(
                    w.cfg.name, current, current.endpoint, kick_keepalive(current)
                )
            except WireGuardError as exc:
                log.warning(
                    "re-creating peer failed iface=%s peer=%s error=%s",
                    w.cfg.name,
                    rt.cfg.label,
                    exc,
                )
                continue
            log.info(
                "silent peer re-created for a fresh initiation iface=%s peer=%s",
                w.cfg.name,
                rt.cfg.label,
            )

    def _after_apply(self, rt: PeerRuntime) -> None:
        """Keep re-fetching a peer with backoff until its handshake shows the tunnel is up."""
        if rt.status.state == PeerState.CONNECTED:
            self.w.schedule.handshake_seen(rt.key)
        else:
            self._refetch_later(rt)
