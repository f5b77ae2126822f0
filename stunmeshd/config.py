"""The configuration: stunmesh-go's YAML schema, parsed into frozen dataclasses.

The dataclasses below are the contract every other module reads. Parsing and validation
(``load_config``) report each problem as one ConfigError naming the file, key path and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERFACE_PROTOCOLS = ("ipv4", "ipv6", "dualstack")
PEER_PROTOCOLS = ("ipv4", "ipv6", "prefer_ipv4", "prefer_ipv6")
PLUGIN_TYPES = ("builtin", "exec", "shell")


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error
    format: str = "console"  # console | json


@dataclass(frozen=True, slots=True)
class PingMonitorConfig:
    """stunmesh-go's global ping_monitor defaults (seconds)."""

    interval: float = 1.0
    timeout: float = 1.0
    fixed_retries: int = 3


@dataclass(frozen=True, slots=True)
class PingConfig:
    """A peer's ``ping`` block; interval/timeout 0 mean "use ping_monitor's"."""

    enabled: bool = False
    target: str = ""
    interval: float = 0.0
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class PeerConfig:
    label: str  # the key under interfaces.<if>.peers
    public_key: bytes  # 32 raw bytes, decoded from base64
    plugin: str  # a key of Config.plugins
    protocol: str = "ipv4"  # one of PEER_PROTOCOLS
    description: str = ""
    ping: PingConfig = field(default_factory=PingConfig)


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    name: str  # the WireGuard interface name
    protocol: str = "ipv4"  # one of INTERFACE_PROTOCOLS
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One store plugin instance. ``options`` holds backend keys (tokens!): never logged."""

    name: str  # the key under plugins
    type: str  # builtin | exec | shell
    builtin: str | None = None  # for type builtin: the `name` key (cloudflare, opendht, ...)
    command: str | None = None  # exec: program; shell: shell command line
    args: tuple[str, ...] = ()
    dedup: bool = False
    timeout: float = 10.0  # seconds an operation may take before the plugin is killed/abandoned
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Config:
    source: Path | None  # the file it came from
    refresh_interval: float = 600.0  # seconds
    log: LogConfig = field(default_factory=LogConfig)
    stun_servers: tuple[str, ...] = ("stun.l.google.com:19302",)
    ping_monitor: PingMonitorConfig = field(default_factory=PingMonitorConfig)
    interfaces: Mapping[str, InterfaceConfig] = field(default_factory=dict)
    plugins: Mapping[str, PluginConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # non-fatal findings, each naming file and key
