"""Is each tunnel up? Polls WireGuard (handshakes, counters), runs the configured pings, and
turns what it sees into peer states: connected, stale, failed after its grace, path broken."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from stunmeshd.health import ping, resolve_ping_target
from stunmeshd.model import PeerState
from stunmeshd.wireguard.base import DeviceInfo, PeerInfo

from .decisions import Link, endpoint_family, no_handshake_reason, poll_verdict, tunnel_live
from .runtime import PeerRuntime, log

if TYPE_CHECKING:
    from stunmeshd.config import InterfaceConfig
    from stunmeshd.discovery import Discovery
    from stunmeshd.portmap.device import DevicePortMap

    from .clock import Clock
    from .manager import Engine
    from .peers import PeerSet
    from .schedule import Schedule

PING_RESOLVE_TIMEOUT = 5.0  # s a lookup may take; the loop never waits on it


class MonitorHost(Protocol):
    """What watching the tunnels needs from the device's worker."""

    cfg: InterfaceConfig
    info: DeviceInfo | None
    peers: dict[bytes, PeerRuntime]
    peerset: PeerSet
    schedule: Schedule
    clock: Clock
    engine: Engine
    portmap: DevicePortMap

    @property
    def discovery(self) -> Discovery: ...

    async def read_device(self) -> DeviceInfo | None: ...

    def request_rediscover(self) -> None: ...

    def wake(self) -> None: ...

    def warn_once(self, tag: str, msg: str, *args: Any) -> None: ...

    def forget_warning(self, tag: str) -> None: ...


class Monitor:
    """Health of one device's tunnels."""

    def __init__(self, worker: MonitorHost) -> None:
        self.w = worker

    async def poll(self) -> None:
        """Read handshakes and counters; say when a tunnel did not form and why."""
        w = self.w
        info = await w.read_device()
        now = w.clock.monotonic()
        if info is None:
            w.schedule.poll_failed(now)
            return
        w.peerset.sync(info)
        awaiting = False
        for key, rt in w.peers.items():
            current = info.peers.get(key)
            if current is None:
                continue
            if rt.traffic.observe(current.rx_bytes, current.tx_bytes, now):
                self.path_broken(
                    rt,
                    f"nothing received from the peer for "
                    f"{rt.traffic.stall_after:.0f} s while sending",
                )
            self.note_connection(rt, current)
            if rt.status.state != PeerState.APPLIED:
                continue
            grace_over = w.schedule.grace_over(key, now)
            if grace_over is False:
                awaiting = True
            elif grace_over:
                rt.status.update(
                    state=PeerState.FAILED,
                    last_error=no_handshake_reason(rt.status.endpoint, w.discovery),
                )
                self._endpoint_failed(rt, now)
                if len(w.schedule.avoided_families(key, now)) < 2 and rt.cfg.protocol.startswith(
                    "prefer_"
                ):
                    w.schedule.refetch_now(key, now)  # try the other family at once
                log.warning(
                    "no handshake iface=%s peer=%s reason=%s",
                    w.cfg.name,
                    rt.cfg.label,
                    rt.status.last_error,
                )
                w.portmap.path_broken(f"peer {rt.cfg.label}: no handshake", rt.status.endpoint)
        busy = any(rt.traffic.busy for rt in w.peers.values())
        awaiting = awaiting or self.peers_expected(info)
        w.schedule.polled(now, awaiting=awaiting, busy=busy)

    def peers_expected(self, info: DeviceInfo) -> bool:
        """Configured peers are missing from a device that appeared a moment ago.

        Whoever makes an interface adds its peers right after creating it, and we may read it
        in between; nothing signals the peers' arrival, so we look every second for a while.
        """
        w = self.w
        if not w.schedule.expecting_peers(w.clock.monotonic()):
            return False
        return any(key not in info.peers for key in (p.public_key for p in w.cfg.peers.values()))

    def _endpoint_failed(self, rt: PeerRuntime, now: float) -> None:
        endpoint = rt.status.endpoint
        family = endpoint_family(endpoint) if endpoint else None
        self.w.schedule.endpoint_failed(rt.key, now, family)

    def note_connection(self, rt: PeerRuntime, current: PeerInfo) -> None:
        w = self.w
        fields: dict[str, Any] = {
            "latest_handshake": int(current.latest_handshake * 1_000_000),
            "rx_bytes": current.rx_bytes,
            "tx_bytes": current.tx_bytes,
        }
        if current.endpoint:
            fields["endpoint"] = current.endpoint
        live = tunnel_live(current, stalled=rt.traffic.stalled, now=w.clock.wall())
        verdict = poll_verdict(rt.status.state, live=live)
        if verdict is Link.UP:
            if rt.status.state != PeerState.CONNECTED:
                log.info(
                    "handshake iface=%s peer=%s endpoint=%s",
                    w.cfg.name,
                    rt.cfg.label,
                    current.endpoint,
                )
                w.schedule.handshake_seen(rt.key)
            fields.update(state=PeerState.CONNECTED, last_error="")
        elif verdict is Link.STALE:
            fields["state"] = PeerState.APPLIED  # went stale: re-fetch soon
            w.schedule.went_stale(rt.key, w.clock.monotonic())
        rt.status.update(**fields)

    def path_broken(self, rt: PeerRuntime, reason: str) -> None:
        """The tunnel stopped working: re-check our mapping and the peer's record at once."""
        w = self.w
        log.warning("path broken iface=%s peer=%s reason=%s", w.cfg.name, rt.cfg.label, reason)
        endpoint = rt.status.endpoint
        family = endpoint_family(endpoint) if endpoint else None
        w.schedule.path_broken(rt.key, w.clock.monotonic(), family)
        rt.status.update(state=PeerState.APPLIED, last_error=reason)
        w.portmap.path_broken(f"peer {rt.cfg.label}: {reason}", rt.status.endpoint)
        w.request_rediscover()

    def schedule_ping(self, rt: PeerRuntime, *, soon: bool = False) -> None:
        w = self.w
        interval: float | None = None
        if rt.cfg.ping.enabled and rt.cfg.ping.target:
            # per peer first
            interval = (
                0.0 if soon else rt.cfg.ping.interval or w.engine.config.ping_monitor.interval
            )
        w.schedule.ping_later(rt.key, w.clock.monotonic(), interval)
        if interval is not None:
            w.wake()  # the loop's next deadline may now be this one

    def start_pings(self) -> None:
        """Start the due checks, each in a task of its own: an unanswered ping (no tunnel yet)
        takes its whole timeout, and fetches, applies and polls must not wait for it."""
        w = self.w
        due = w.schedule.ping_due(w.clock.monotonic())
        for key, rt in w.peers.items():
            if key in due:
                w.schedule.ping_started(key)
                rt.ping_task = asyncio.create_task(
                    self._ping_checked(rt), name=f"ping-{w.cfg.name}-{rt.cfg.label}"
                )

    async def _ping_checked(self, rt: PeerRuntime) -> None:
        """A ping check in its task: a bug in one is said and the monitor goes on."""
        try:
            await self._ping(rt)
        except Exception:
            log.exception("ping check failed iface=%s peer=%s", self.w.cfg.name, rt.cfg.label)
            self.schedule_ping(rt)

    async def _ping(self, rt: PeerRuntime) -> None:
        """stunmesh-go's ping monitor: fixed_retries failed pings in a row = broken path."""
        w = self.w
        settings = w.engine.config.ping_monitor
        timeout = rt.cfg.ping.timeout or settings.timeout
        mark = w.info.fwmark if w.info else 0
        try:
            address = await self._ping_address(rt)
        except (OSError, TimeoutError) as exc:
            # a name that does not resolve leaves the peer unmonitored, as in stunmesh-go
            w.warn_once(
                f"resolve:{rt.cfg.label}",
                "ping target does not resolve, not monitoring iface=%s peer=%s target=%s error=%s",
                w.cfg.name,
                rt.cfg.label,
                rt.cfg.ping.target,
                exc or type(exc).__name__,
            )
            self.schedule_ping(rt)
            return
        try:
            ok = await ping(address, timeout, mark=mark)
        except OSError as exc:
            log.warning(
                "ping failed to run iface=%s peer=%s error=%s", w.cfg.name, rt.cfg.label, exc
            )
            ok = False
        self.schedule_ping(rt)
        if ok:
            rt.ping_failures = 0
            return
        rt.ping_failures += 1
        if rt.ping_failures == settings.fixed_retries and rt.status.state in (
            PeerState.CONNECTED,
            PeerState.APPLIED,
        ):
            self.path_broken(
                rt, f"{rt.ping_failures} pings to {rt.cfg.ping.target} went unanswered"
            )

    async def _ping_address(self, rt: PeerRuntime) -> str:
        """ping.target as an address, a host name looked up again now and then
        (``Schedule.resolve_due``). Raises OSError or TimeoutError."""
        w = self.w
        now = w.clock.monotonic()
        if w.schedule.resolve_due(rt.key, now):
            rt.ping_address = ""
            w.schedule.resolve_started(rt.key, now)
            rt.ping_address = await resolve_ping_target(rt.cfg.ping.target, PING_RESOLVE_TIMEOUT)
            w.schedule.resolved(rt.key, now)
            w.forget_warning(f"resolve:{rt.cfg.label}")
        if not rt.ping_address:
            raise OSError("the last lookup failed")
        return rt.ping_address
