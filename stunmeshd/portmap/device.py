"""The engine's seam to port mapping: one :class:`DevicePortMap` per managed interface.

The worker tells it WireGuard's listen port (``sync``), that the network changed
(``network_changed``) and asks it which IPv4 endpoint to publish (``choose``). It keeps the
Device's mapping properties up to date and calls ``republish`` when the endpoint to publish
changed. The rule for that choice lives here and only here:

* a mapping exists and STUN agrees, or STUN found nothing for IPv4: publish the mapping;
* they disagree: the mapping when the NAT is classified dependent (STUN's port is useless
  then), else STUN (the router's answer is the less proven one).

``EndpointSource`` on the bus says which one was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from stunmeshd.config import InterfaceConfig
from stunmeshd.model import DeviceStatus, NatMapping
from stunmeshd.portmap.client import PortMapper
from stunmeshd.portmap.machine import Phase, Status

log = logging.getLogger(__name__)

SOURCE_STUN = "stun"
SOURCE_MAPPING = "port-mapping"
SETTLE_TIMEOUT = 2.5  # s a first publish waits for a mapping in progress (probe <= 1 s + map)
# s a host that published its mapping waits before WireGuard first sends to a peer: behind a
# dependent NAT our own first packet is useless (the peer's NAT drops it) and, on a Linux
# router, its conntrack entry can make the router drop the peer's packet to the mapped port
# (the same tuple in reply) until WireGuard's next try 5 s later
HOLD_BACK = 1.0


class DevicePortMap:
    def __init__(
        self,
        cfg: InterfaceConfig,
        status: Callable[[], DeviceStatus],
        republish: Callable[[], None],
        mapper_factory: Callable[..., PortMapper] = PortMapper,
    ) -> None:
        self._status = status
        self._republish = republish
        self._factory = mapper_factory
        self._cfg = cfg
        self._settled = asyncio.Event()
        self._chosen: str | None = None  # the IPv4 endpoint last chosen for publishing
        self._stun_v4: str | None = None
        self._nat = NatMapping.UNKNOWN
        self._retiring: set[asyncio.Future[None]] = set()
        self._expiry: tuple[object, float] = (None, 0.0)  # (mapping, its expiry in Unix s)
        self._held: tuple[str, float] = ("", 0.0)  # (mapped endpoint, Unix s it was first held)
        self._rejudge: asyncio.TimerHandle | None = None  # an early report, judged later
        self.mapper = self._new_mapper(cfg)

    def _new_mapper(self, cfg: InterfaceConfig) -> PortMapper:
        mapper = self._factory(
            cfg.name,
            mode=cfg.port_mapping,
            lifetime=int(cfg.port_mapping_lifetime),
            on_change=self._changed,
        )
        mapper.start()
        self._settled.clear()
        return mapper

    # --- what the worker calls ----------------------------------------------------------

    def sync(self, cfg: InterfaceConfig, listen_port: int | None) -> None:
        """After each device read: the port (0/None: nothing to map) and the config."""
        if (cfg.port_mapping, cfg.port_mapping_lifetime) != (
            self._cfg.port_mapping,
            self._cfg.port_mapping_lifetime,
        ):
            retiring = asyncio.ensure_future(self.mapper.stop())
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            self._cfg = cfg
            self.mapper = self._new_mapper(cfg)
        self.mapper.set_port(listen_port or None)
        self._publish_status()

    def network_changed(self, why: str) -> None:
        self.mapper.network_changed(why)

    def path_broken(self, why: str, peer_endpoint: str) -> None:
        """Health says the path to a peer at ``peer_endpoint`` broke or never formed.

        It concerns the mapping only while the mapping is what we published and the peer is
        reached over IPv4; the machine decides (re-map, or a router that lies). The evidence
        that the mapping works: a peer on IPv4 has handshaken since we first held it. A
        report that came too early is judged again when it would count, unless a handshake
        came meanwhile.
        """
        if peer_endpoint and not peer_endpoint.startswith("["):
            self._judge(why, time.time())

    def peer_moved(self, peer: str, endpoint: str) -> None:
        """A peer's record named an endpoint it had not named before (it came back, or its
        network changed): evidence that a "not forwarding" verdict may have been its absence."""
        self.mapper.peer_moved(f"peer {peer} published a new endpoint {endpoint}")

    def _judge_again(self, why: str, reported: float) -> None:
        self._rejudge = None
        self._judge(why, reported)

    def _judge(self, why: str, reported: float) -> None:
        if self._status().endpoint_source != SOURCE_MAPPING or self._handshake_since(reported):
            return
        wait = self.mapper.path_broken(why, carried=self._handshake_since(self._held[1]))
        if wait is not None and self._rejudge is None:
            self._rejudge = asyncio.get_running_loop().call_later(
                wait, self._judge_again, why, reported
            )

    def _handshake_since(self, unix: float) -> bool:
        """A peer reached over IPv4 has handshaken at or after ``unix``."""
        since_us = int(unix * 1e6)
        return any(
            p.latest_handshake >= since_us and p.endpoint and not p.endpoint.startswith("[")
            for p in self._status().peers.values()
        )

    async def choose(self, endpoints: dict[str, str], nat: NatMapping) -> dict[str, str]:
        """The endpoints to publish, by family (STUN's, with IPv4 maybe the mapping's).

        Behind a dependent NAT a mapping being made is waited for (bounded): STUN's endpoint
        is useless there, and publishing twice would cost the peer a round.
        """
        if nat.dependent:
            await self._settle()
        self._stun_v4, self._nat = endpoints.get("ipv4"), nat
        mapping = self.mapper.status.mapping
        chosen, source = choose_endpoints(endpoints, mapping.endpoint if mapping else None, nat)
        self._chosen = chosen.get("ipv4")
        self._note_source(source)
        return chosen

    def _note_source(self, source: str) -> None:
        status = self._status()
        if status.endpoint_source != source:
            log.info(
                "publishing %s endpoint iface=%s endpoint=%s nat=%s",
                source,
                self._cfg.name,
                self._chosen or "-",
                self._nat,
            )
        status.update(endpoint_source=source)

    async def hold_back(self, endpoint: str, peer: Any) -> bool:
        """Before WireGuard is first pointed at ``endpoint`` (IPv4, no handshake yet) while
        we publish a mapping behind a dependent NAT: let the peer reach us first. True when
        it waited."""
        if (
            self._status().endpoint_source != SOURCE_MAPPING
            or not self._nat.dependent
            or endpoint.startswith("[")
            or (peer is not None and (peer.latest_handshake or peer.endpoint))
        ):
            return False
        await asyncio.sleep(HOLD_BACK)
        return True

    async def _settle(self) -> None:
        """Wait (bounded) for a mapping being made, so the first publish can carry it."""
        if self.mapper.status.phase in (Phase.PROBING, Phase.MAPPING):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), SETTLE_TIMEOUT)

    async def stop(self) -> None:
        """Delete the mapping (daemon stop, interface gone)."""
        if self._rejudge is not None:
            self._rejudge.cancel()
        await asyncio.gather(self.mapper.stop(), *self._retiring, return_exceptions=True)

    # --- mapper events ------------------------------------------------------------------

    def _changed(self, status: Status) -> None:
        if status.phase in (Phase.PROBING, Phase.MAPPING):
            self._settled.clear()  # mapping (again): a publish meanwhile waits for it
        else:
            self._settled.set()
        self._publish_status()
        if self._stun_v4 is None and self._chosen is None:
            return  # nothing published yet: the first cycle will choose
        endpoints = {"ipv4": self._stun_v4} if self._stun_v4 else {}
        mapped = status.mapping.endpoint if status.mapping else None
        would, source = choose_endpoints(endpoints, mapped, self._nat)
        if would.get("ipv4") != self._chosen:
            self._republish()  # the next publish chooses again and says so
        else:
            self._note_source(source)  # the same endpoint, now (or no longer) a mapping's

    def _publish_status(self) -> None:
        st = self.mapper.status
        m = st.mapping
        if m is not None and self._expiry[0] is not m:  # fixed once per mapping: no jitter
            self._expiry = (m, self.mapper.expires_unix())
        if m is not None and m.endpoint != self._held[0]:
            self._held = (m.endpoint, time.time())
        self._status().update(**properties(st, self._expiry[1] if m else 0.0))


def choose_endpoints(
    endpoints: dict[str, str], mapped: str | None, nat: NatMapping
) -> tuple[dict[str, str], str]:
    """The module docstring's rule: the endpoints to publish and where IPv4's came from."""
    stun_v4 = endpoints.get("ipv4")
    if mapped is not None and (stun_v4 is None or stun_v4 == mapped or nat.dependent):
        return {**endpoints, "ipv4": mapped}, SOURCE_MAPPING
    return dict(endpoints), SOURCE_STUN


def properties(st: Status, expires_unix: float) -> dict[str, Any]:
    """The Device fields of one mapping status (see dbus/…Device.xml)."""
    m = st.mapping
    if m is None:
        return {
            "port_mapping": "",
            "port_mapping_endpoint": "",
            "port_mapping_expires": 0,
            "port_mapping_reason": st.reason or st.phase.value,
        }
    return {
        "port_mapping": m.protocol.value,
        "port_mapping_endpoint": m.endpoint,
        "port_mapping_expires": int(expires_unix * 1e6),
        "port_mapping_reason": "",
    }
