"""A stand-in for the engine, for bus tests that do not need real WireGuard.

The bus layer only reads ``engine.model``/``engine.config``/``engine.workers`` and calls
``refresh``/``refresh_peer``/``reload``; this object has exactly that surface over a real
``Model``, records the calls and answers with scripted ``CycleResult``s. The end-to-end tests
(test_daemon_e2e.py) run the real daemon in the lab instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stunmeshd.config import Config, PluginConfig
from stunmeshd.engine import CycleResult
from stunmeshd.errors import ConfigError, StunmeshError
from stunmeshd.model import DeviceStatus, ManagerState, Model, PeerStatus, RefreshCompleted

SECRET_TOKEN = "cf-token-9f8e7d6c5b4a-DO-NOT-LEAK"
PRIVATE_KEY = base64.b64encode(b"\x42" * 32).decode()  # what a leak would look like


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class StandInEngine:
    """The engine surface the bus uses, over a real Model."""

    model: Model = field(default_factory=Model)
    config: Config = field(
        default_factory=lambda: Config(
            source=Path("/etc/stunmeshd/config.yaml"),
            refresh_interval=300.0,
            stun_servers=("198.51.100.1:3478", "203.0.113.1:3478"),
            plugins={
                "cf": PluginConfig(
                    name="cf",
                    type="builtin",
                    builtin="cloudflare",
                    options={"token": SECRET_TOKEN, "zone": "example.com"},
                )
            },
        )
    )
    calls: list[tuple[str, Any]] = field(default_factory=list)
    results: dict[str, CycleResult] = field(default_factory=dict)  # by ifname or peer key
    delay: float = 0.0  # how long a "cycle" takes
    reload_error: str | None = None
    next_config: Config | None = None
    workers: dict[str, Any] = field(default_factory=dict)

    def add_device(self, ifname: str, **fields: Any) -> DeviceStatus:
        device = self.model.add_device(
            ifname,
            backend=fields.pop("backend", "wireguard-go"),
            public_key=fields.pop("public_key", random_key()),
            listen_port=fields.pop("listen_port", 51820),
            **fields,
        )
        self.workers[ifname] = object()
        return device

    def remove_device(self, ifname: str) -> None:
        self.workers.pop(ifname, None)
        self.model.remove_device(ifname)

    def add_peer(self, device: DeviceStatus, name: str, **fields: Any) -> PeerStatus:
        return self.model.add_peer(
            device,
            name=name,
            public_key=fields.pop("public_key", random_key()),
            store=fields.pop("store", "cf"),
            **fields,
        )

    async def refresh(self, interface: str | None = None) -> list[CycleResult]:
        self.calls.append(("refresh", interface))
        if interface is not None and interface not in self.workers:
            raise StunmeshError(f"no managed WireGuard interface {interface!r}")
        names = [interface] if interface else list(self.workers)
        await asyncio.sleep(self.delay)
        results = [self.results.get(n, CycleResult(True)) for n in names]
        for name, result in zip(names, results, strict=True):
            device = self.model.devices.get(name)
            if device is not None:
                self.model.emit(RefreshCompleted(device, result.ok, result.error))
        return results

    async def refresh_peer(self, public_key: str) -> CycleResult:
        self.calls.append(("refresh_peer", public_key))
        await asyncio.sleep(self.delay)
        return self.results.get(public_key, CycleResult(True))

    async def reload(self) -> None:
        self.calls.append(("reload", None))
        if self.reload_error:
            raise ConfigError(self.reload_error, path=str(self.config.source), key="stun")
        if self.next_config is not None:
            self.config = self.next_config

    def start(self) -> None:
        self.model.set_state(ManagerState.RUNNING)

    def with_config(self, **changes: Any) -> Config:
        return replace(self.config, **changes)
