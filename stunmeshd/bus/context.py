"""What every exported object needs: the bus, the engine it adapts, the authorizer, and a
place for background tasks (a Refresh without ``wait`` must outlive its method call)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from stunmeshd.errors import StunmeshError

if TYPE_CHECKING:
    from stunmeshd.bus.auth import Authorizer
    from stunmeshd.bus.connection import StunMeshBus
    from stunmeshd.engine import Engine
    from stunmeshd.model import Model

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class BusContext:
    bus: StunMeshBus
    engine: Engine
    auth: Authorizer
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def model(self) -> Model:
        return self.engine.model

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``coro`` beyond the current call; its failure is logged, not lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        # domain errors reach the caller as named D-Bus errors and the engine logs them
        level = logging.DEBUG if isinstance(exc, StunmeshError) else logging.WARNING
        log.log(level, "background %s failed: %s", task.get_name(), exc)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
