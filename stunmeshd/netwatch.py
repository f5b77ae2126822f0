"""Watch the host's network (RTNL): links coming and going, addresses and default routes.

stunmesh-go has to be restarted when a WireGuard interface is re-created and notices a new
uplink only at its next refresh. stunmeshd subscribes to rtnetlink instead: a managed
interface appearing or vanishing is re-read at once, and an address or default-route change
elsewhere on the host re-runs discovery (the public mapping may have moved).

Nothing is lost in a burst: the socket has a large receive buffer, and if the kernel still
overflows it (ENOBUFS) every listener is told "anything may have changed".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable, Collection
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

log = logging.getLogger(__name__)

GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
RCVBUF = 4 * 1024 * 1024
RESTART_DELAY = 1.0  # s before re-opening the socket after an error

LinkHandler = Callable[[str, bool], None]  # (ifname, present)
ChangeHandler = Callable[[str], None]  # (reason)


class NetWatch:
    """Calls ``on_link`` for link events and ``on_change`` for address/route changes.

    ``ignore()`` names interfaces whose *address* changes do not matter (the WireGuard
    interfaces themselves: their tunnel addresses say nothing about the uplink).
    """

    def __init__(
        self,
        on_link: LinkHandler,
        on_change: ChangeHandler,
        ignore: Callable[[], Collection[str]] = tuple,
    ) -> None:
        self.on_link = on_link
        self.on_change = on_change
        self.ignore = ignore
        self._names: dict[int, str] = {}  # ifindex -> name, for address events
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="netwatch")
        await asyncio.wait(
            {self._task, asyncio.ensure_future(self._ready.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            ipr = AsyncIPRoute(rcvbuf=RCVBUF)
            try:
                await ipr.bind(groups=GROUPS)
                async for link in await ipr.link("dump"):
                    self._names[link["index"]] = link.get_attr("IFLA_IFNAME") or ""
                self._ready.set()
                while True:
                    async for msg in ipr.get():
                        self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("netlink overflow: events lost, re-checking everything")
                    self.on_change("netlink overflow")
                else:
                    log.warning("netlink watch failed, restarting error=%s", exc)
            except Exception:
                log.exception("netlink watch failed, restarting")
            finally:
                ipr.close()
            self._ready.set()
            await asyncio.sleep(RESTART_DELAY)

    def _dispatch(self, msg: Any) -> None:
        event = msg.get("event", "")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            name = msg.get_attr("IFLA_IFNAME") or self._names.get(msg["index"], "")
            present = event == "RTM_NEWLINK"
            known = msg["index"] in self._names
            if present:
                self._names[msg["index"]] = name
            else:
                self._names.pop(msg["index"], None)
            if present and known:
                return  # a flag or stats update of a link we know: not a new device
            log.debug(
                "link %s ifname=%s index=%s", "new" if present else "gone", name, msg["index"]
            )
            self.on_link(name, present)
        elif event in ("RTM_NEWADDR", "RTM_DELADDR"):
            name = self._names.get(msg["index"], "")
            if name in self.ignore() or name == "lo":
                return
            self.on_change(
                f"address {'added' if event == 'RTM_NEWADDR' else 'removed'} "
                f"on {name or msg['index']}"
            )
        elif event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if msg.get("dst_len", 1) == 0 and msg.get("table", 254) in (254, 252):
                self.on_change(f"default route {'added' if event == 'RTM_NEWROUTE' else 'removed'}")
