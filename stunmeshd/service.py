"""The running daemon: engine (and, later, bus) wired together, signals, one-shot mode.

``daemon.py`` parses the command line and the config; this module runs them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
from argparse import Namespace as Args
from collections.abc import Coroutine
from typing import Any

from stunmeshd import __version__
from stunmeshd.bus import BusError, BusKeeper, start_daemon_bus
from stunmeshd.config import Config
from stunmeshd.engine import Engine
from stunmeshd.errors import ConfigError
from stunmeshd.logs import setup_logging
from stunmeshd.model import Event, Model, PeerState, PeerStatus
from stunmeshd.netwatch import NetWatch

log = logging.getLogger("stunmeshd")

ONESHOT_WAIT = 30.0  # s: how long --oneshot waits for every peer's record by default


def run(config: Config, args: Args) -> int:
    """Run until SIGTERM/SIGINT (or, with --oneshot, until one round is done)."""
    setup_logging(getattr(args, "log_level", None) or config.log.level, config.log.format)
    try:
        return asyncio.run(serve(config, args))
    except KeyboardInterrupt:
        return 130


async def serve(config: Config, args: Args) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    model = Model()
    engine = Engine(config, model)
    log.info(
        "starting version=%s config=%s interfaces=%s",
        __version__,
        config.source,
        ",".join(config.interfaces) or "-",
    )
    for warning in config.warnings:
        log.warning("config: %s", warning)
    loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(reload(engine)))
    try:
        await engine.start()
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    netwatch = NetWatch(
        engine.on_link, engine.on_network_change, ignore=lambda: engine.workers.keys()
    )
    try:
        await netwatch.start()
    except OSError as exc:  # the daemon still works, reacting at its timers only
        log.warning("cannot watch the network, reacting to changes at refresh only: %s", exc)
    try:
        if getattr(args, "oneshot", False):
            wait = float(getattr(args, "oneshot_wait", None) or ONESHOT_WAIT)
            return await oneshot(engine, config, wait, stop)
        try:
            bus = await start_daemon_bus(engine, getattr(args, "bus", "system"))
        except BusError as exc:
            log.error("D-Bus: %s", exc)
            return 1
        try:
            lost = await _until_stopped(stop, bus)
        finally:
            if bus is not None:
                await bus.close()
        if lost is not None:  # the unit's Restart=on-failure brings us back
            log.error("D-Bus: %s; exiting", lost)
            return 1
        log.info("stopping")
        return 0
    finally:
        await netwatch.close()
        await engine.stop()


async def _until_stopped(stop: asyncio.Event, bus: BusKeeper | None) -> BusError | None:
    """Wait for SIGTERM/SIGINT, or for the bus name to be lost for good (returned)."""
    if bus is None:
        await stop.wait()
        return None
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopped, bus.failed], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return bus.failed.result() if bus.failed.done() and not stop.is_set() else None


_background: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def reload(engine: Engine) -> None:
    """SIGHUP: re-read the config; an invalid one is refused and the running one stays."""
    log.info("reloading configuration source=%s", engine.config.source)
    try:
        await engine.reload()
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)


def _not_ready(engine: Engine, config: Config) -> list[str]:
    """Why --oneshot cannot succeed at all, known after the first cycle: interfaces that
    cannot be used and configured peers that are not on their WireGuard interface."""
    problems = []
    for name, icfg in config.interfaces.items():
        worker = engine.workers.get(name)
        if worker is None or not worker.present or worker.info is None:
            reason = worker.status.last_error if worker is not None else ""
            problems.append(f"interface {name}: {reason or 'not found'}")
            continue
        absent = [label for label, p in icfg.peers.items() if p.public_key not in worker.info.peers]
        if absent:
            problems.append(
                f"{name}: configured peer(s) {', '.join(absent)} not on the WireGuard "
                f"interface (add them with `wg set {name} peer KEY allowed-ips ...`)"
            )
    return problems


async def oneshot(engine: Engine, config: Config, wait: float, stop: asyncio.Event) -> int:
    """One full cycle per interface, then wait (bounded) until every peer has an endpoint.

    What can never succeed (a missing interface, a peer not on its device) is reported right
    after the first cycle instead of after the wait; progress is logged as peers get theirs.
    """
    await engine.refresh()
    problems = _not_ready(engine, config)
    if problems:
        log.error("oneshot: cannot succeed: %s", "; ".join(problems))
        return 1
    # the configured peers, by interface and key: other Peer objects (peers the configuration
    # disables, say) are not waited for
    wanted = [
        (name, base64.b64encode(p.public_key).decode(), p.label)
        for name, icfg in config.interfaces.items()
        for p in icfg.peers.values()
    ]
    done = asyncio.Event()
    reported = -1

    def states() -> list[tuple[str, PeerStatus | None]]:
        out = []
        for iface, key, label in wanted:
            device = engine.model.devices.get(iface)
            out.append((f"{iface}/{label}", device.peers.get(key) if device else None))
        return out

    def ready(status: PeerStatus | None) -> bool:
        return status is not None and status.state in (PeerState.APPLIED, PeerState.CONNECTED)

    def check(_event: Event | None = None) -> None:
        nonlocal reported
        now = states()
        count = sum(ready(status) for _, status in now)
        if count != reported:
            reported = count
            waiting = [
                f"{name} ({status.state.name.lower() if status else 'not managed'})"
                for name, status in now
                if not ready(status)
            ]
            log.info(
                "oneshot: %d of %d peer(s) have an endpoint%s",
                count,
                len(wanted),
                f"; waiting up to {wait:.0f} s for {', '.join(waiting)}" if waiting else "",
            )
        if count == len(wanted):
            done.set()

    engine.model.subscribe(check)
    check()
    waiters = [asyncio.create_task(done.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        engine.model.unsubscribe(check)
    if done.is_set():
        log.info("oneshot: every peer has an endpoint")
        return 0
    missing = [
        f"{name}: "
        + (status.state.name.lower() if status else "not managed")
        + (f" ({status.last_error})" if status and status.last_error else "")
        for name, status in states()
        if not ready(status)
    ]
    log.error("oneshot: not every peer got an endpoint within %.0f s: %s", wait, "; ".join(missing))
    return 1
