"""The running daemon: engine (and, later, bus) wired together, signals, one-shot mode.

``daemon.py`` parses the command line and the config; this module runs them.
"""

from __future__ import annotations

import asyncio
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
from stunmeshd.model import Event, Model, PeerState
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


async def oneshot(engine: Engine, config: Config, wait: float, stop: asyncio.Event) -> int:
    """One full cycle per interface, then wait (bounded) until every peer has an endpoint."""
    await engine.refresh()
    configured = sum(len(i.peers) for i in config.interfaces.values())
    done = asyncio.Event()

    def check(_event: Event | None = None) -> None:
        peers = [p for d in engine.model.devices.values() for p in d.peers.values()]
        if len(peers) == configured and all(
            p.state in (PeerState.APPLIED, PeerState.CONNECTED) for p in peers
        ):
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
        f"{d.interface}/{p.name}: {p.state.name.lower()}"
        + (f" ({p.last_error})" if p.last_error else "")
        for d in engine.model.devices.values()
        for p in d.peers.values()
        if p.state not in (PeerState.APPLIED, PeerState.CONNECTED)
    ]
    managed = sum(len(d.peers) for d in engine.model.devices.values())
    if managed < configured:
        missing.append(f"{configured - managed} configured peer(s) not on their device")
    log.error("oneshot: not every peer got an endpoint within %.0f s: %s", wait, "; ".join(missing))
    return 1
