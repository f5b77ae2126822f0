"""The configuration: stunmesh-go's YAML schema, parsed into frozen dataclasses.

The dataclasses below are the contract every other module reads. Parsing and validation
(``load_config``) report each problem as one ConfigError naming the file, key path and line.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import re
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import yaml

from stunmeshd import safeyaml
from stunmeshd.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import StrPath

INTERFACE_PROTOCOLS = ("ipv4", "ipv6", "dualstack")
PORT_MAPPING_MODES = ("auto", "off", "pcp", "natpmp", "upnp")
PORT_MAPPING_LIFETIME = 7200.0  # s (RFC 6886 §3.3's recommendation)
PORT_MAPPING_LIFETIME_RANGE = (2.0, 86400.0)
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
class DisabledPeer:
    """A configured peer the daemon cannot run, as stunmesh-go skips it (or fails it at run
    time): shown on the bus with its reason, listed by ``--check`` (exit 1)."""

    label: str  # the key under interfaces.<if>.peers
    reason: str  # one line; never the key text (it may be a pasted private key)
    public_key: bytes | None = None  # when the key itself is good (e.g. an undefined plugin)
    plugin: str = ""
    protocol: str = "ipv4"
    line: int | None = None  # where the peer starts in the file


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    name: str  # the WireGuard interface name
    protocol: str = "ipv4"  # one of INTERFACE_PROTOCOLS
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)  # the peers that run
    disabled: Mapping[str, DisabledPeer] = field(default_factory=dict)  # the ones that cannot
    # stunmeshd-only (stunmesh-go ignores them): map WireGuard's port on the router
    port_mapping: str = "auto"  # one of PORT_MAPPING_MODES
    port_mapping_lifetime: float = PORT_MAPPING_LIFETIME  # seconds asked of the router


DEFAULT_REFRESH_INTERVAL = 600.0  # s, stunmesh-go's 10m
DEFAULT_STUN_SERVER = "stun.l.google.com:19302"


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One store plugin instance. ``options`` holds backend keys (tokens!): never logged."""

    name: str  # the key under plugins
    type: str  # builtin | exec | shell
    builtin: str | None = None  # for type builtin: the `name` key (cloudflare, opendht, ...)
    command: str | None = None  # exec: program; shell: shell command line
    args: tuple[str, ...] = ()
    dedup: bool = False
    # seconds an operation may take before the plugin is killed/abandoned; None: the store's
    # own default (exec/shell 120 s, opendht 15 s as stunmesh-go, cloudflare 10 s)
    timeout: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Config:
    source: str | None  # the file it came from
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    log: LogConfig = field(default_factory=LogConfig)
    stun_servers: tuple[str, ...] = (DEFAULT_STUN_SERVER,)
    ping_monitor: PingMonitorConfig = field(default_factory=PingMonitorConfig)
    interfaces: Mapping[str, InterfaceConfig] = field(default_factory=dict)
    plugins: Mapping[str, PluginConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # non-fatal findings, each naming file and key

    def disabled_peers(self) -> list[str]:
        """``file:line: interfaces.<if>.peers.<label>: reason`` for every disabled peer."""
        source = str(self.source) if self.source is not None else "<config>"
        return [
            str(
                ConfigError(
                    peer.reason, path=source, key=_peer_key(iface, peer.label), line=peer.line
                )
            )
            for iface in self.interfaces.values()
            for peer in iface.disabled.values()
        ]


# ------------------------------------------------------------------------------------------
# Parsing: YAML text -> the dataclasses above, or one ConfigError naming file, key and line.
#
# The YAML is *composed* (not loaded) so every key and value keeps its line number, and so the
# schema, not YAML 1.1's loose typing, decides what a scalar means. Reading a file blocks: call
# load_config before the event loop starts, or through asyncio.to_thread (e.g. on Reload).
# ------------------------------------------------------------------------------------------

#: Directories searched, in order, for CONFIG_NAMES when neither -c nor --config-dir is given:
#: stunmeshd's own first, then stunmesh-go's, so one file can serve both tools. A ``$VAR``
#: entry is skipped when the variable is unset or empty.
SEARCH_DIRS: tuple[str, ...] = (
    "/etc/stunmeshd",
    "$STUNMESH_CONFIG_DIR",
    "/etc/stunmesh",
    "$HOME/.stunmesh",
    ".",
)
CONFIG_NAMES: tuple[str, ...] = ("config.yaml", "config.yml")

#: log.level spellings stunmeshd accepts (any case), mapped to the level it logs at.
LOG_LEVELS: Mapping[str, str] = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
}
#: stunmesh-go's other zerolog levels, read as the closest level stunmeshd has (with a warning).
ZEROLOG_LEVELS: Mapping[str, str] = {
    "trace": "debug",
    "fatal": "error",
    "panic": "error",
    "disabled": "error",
}
LOG_FORMATS = ("console", "json")
#: zerolog's level numbers (6 is its "no level": only level-less messages, so as disabled).
_ZEROLOG_NUMBERS: Mapping[int, str] = {
    -1: "trace",
    0: "debug",
    1: "info",
    2: "warn",
    3: "error",
    4: "fatal",
    5: "panic",
    6: "disabled",
    7: "disabled",
}

#: Plugin keys stunmeshd itself reads; every other key of a plugin goes to PluginConfig.options.
GENERIC_PLUGIN_KEYS = frozenset({"type", "name", "command", "args", "dedup", "timeout"})
MAX_CONFIG_BYTES = 1 << 20

# Interface keys stunmesh-go has for other platforms: accepted, warned about.
_LINUX_NOOP_KEYS: Mapping[str, str] = {
    "proxy": "does nothing on Linux: stunmeshd has no proxy mode, it shares WireGuard's own "
    "UDP port through a raw socket",
    "listen_interfaces": "does nothing on Linux: the raw socket sees STUN answers on every "
    "interface",
    "listen_default_route": "does nothing on Linux: the raw socket sees STUN answers on every "
    "interface",
}

_TOP_KEYS = ("refresh_interval", "log", "stun", "ping_monitor", "interfaces", "plugins")
_PORT_MAPPING_KEYS = ("port_mapping", "port_mapping_lifetime")
_PEER_KEYS = ("public_key", "plugin", "protocol", "description", "ping")
_PING_KEYS = ("enabled", "target", "interval", "timeout")

_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR = (_TAG + t for t in ("null", "bool", "int", "float", "str"))
_MERGE = _TAG + "merge"
_KINDS = {
    _NULL: "empty",
    _BOOL: "true/false",
    _INT: "a number",
    _FLOAT: "a decimal number",
    _STR: "text",
    _TAG + "timestamp": "a date",
}
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
#: Go's strconv.ParseBool spellings, which stunmesh-go's weak decoding accepts in quotes.
_GO_BOOLS: Mapping[str, bool] = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_DECIMAL = re.compile(r"[+-]?[0-9]+")
#: A DNS name as stunmesh-go's resolver would look it up (ping.target): labels of letters,
#: digits, hyphens and underscores, dot-separated, at most 253 characters.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_ENV_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

_NS_PER_UNIT: Mapping[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_UNITS_HINT = "(units: ns, us, ms, s, m, h)"
_NS_LIMIT = 1 << 63  # Go's Duration is an int64 count of nanoseconds


def parse_duration(value: str) -> float:
    """Seconds in a Go duration ("90s", "1h30m", "1.5s", "500ms", "-2m", "0").

    Follows Go's time.ParseDuration digit for digit (fractions truncated to the nanosecond,
    the int64 range), so a file means the same to stunmesh-go and to stunmeshd.
    Raises ValueError with a one-line reason for anything Go refuses, including bare numbers.
    """
    if not isinstance(value, str):
        raise ValueError(f'a duration must be text like "90s", not {type(value).__name__}')
    orig = _quote(value)
    s = value
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {orig}")
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise ValueError(f"invalid duration {orig}")
        whole, s = _split_digits(s)
        if len(whole.lstrip("0")) > 19 or (whole and int(whole) > _NS_LIMIT):
            raise ValueError(f"duration {orig} is out of range")
        v = int(whole) if whole else 0
        fraction, scale, has_fraction = 0, 1.0, False
        if s[:1] == ".":
            digits, s = _split_digits(s[1:])
            has_fraction = bool(digits)
            fraction, scale = _leading_fraction(digits)
        if not whole and not has_fraction:
            raise ValueError(f"invalid duration {orig}")
        end = 0
        while end < len(s) and not (s[end] == "." or "0" <= s[end] <= "9"):
            end += 1
        if end == 0:
            raise ValueError(f"missing unit in duration {orig} {_UNITS_HINT}")
        unit_text, s = s[:end], s[end:]
        unit = _NS_PER_UNIT.get(unit_text)
        if unit is None:
            raise ValueError(f"unknown unit {_quote(unit_text)} in duration {orig} {_UNITS_HINT}")
        if v > _NS_LIMIT // unit:
            raise ValueError(f"duration {orig} is out of range")
        v *= unit
        if fraction > 0:
            v += int(float(fraction) * (float(unit) / scale))
            if v > _NS_LIMIT:
                raise ValueError(f"duration {orig} is out of range")
        total += v
        if total > _NS_LIMIT:
            raise ValueError(f"duration {orig} is out of range")
    if not negative and total > _NS_LIMIT - 1:
        raise ValueError(f"duration {orig} is out of range")
    return (-total if negative else total) / 1e9


def _split_digits(s: str) -> tuple[str, str]:
    end = 0
    while end < len(s) and "0" <= s[end] <= "9":
        end += 1
    return s[:end], s[end:]


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: digits past int64 precision are dropped, not an error."""
    x, scale = 0, 1.0
    for c in digits:
        if x > (_NS_LIMIT - 1) // 10:
            break
        y = x * 10 + ord(c) - 48
        if y > _NS_LIMIT:
            break
        x, scale = y, scale * 10
    return x, scale


def normalize_log_level(value: str) -> str:
    """The logging level ("debug", "info", "warning", "error") for a log.level / --log-level.

    Accepts any case, "warn" for "warning", and stunmesh-go's zerolog-only levels (trace ->
    debug; fatal, panic, disabled -> error) so its config files keep working.
    Raises ValueError naming the accepted levels.
    """
    low = value.strip().lower() if isinstance(value, str) else ""
    low = zerolog_level_name(low) or low
    level = LOG_LEVELS.get(low) or ZEROLOG_LEVELS.get(low)
    if level is None:
        raise ValueError(
            f"must be one of debug, info, warn, warning, error, not {_quote(str(value))}"
        )
    return level


def zerolog_level_name(value: str) -> str | None:
    """The zerolog level name for a level number (``"5"`` -> ``"panic"``), as stunmesh-go's
    zerolog.ParseLevel accepts -128..127; None for anything else. Numbers beyond the named
    ones log like the nearest named level."""
    text = value.strip()
    if not _DECIMAL.fullmatch(text) or len(text) > 4:
        return None
    number = int(text)
    if not -128 <= number <= 127:
        return None
    return _ZEROLOG_NUMBERS[min(max(number, -1), 7)]


def find_config(
    config_dir: StrPath | None = None, *, search_dirs: Sequence[str] | None = None
) -> str:
    """The configuration file to read: in ``config_dir`` if given, else by the search order.

    ``search_dirs`` replaces SEARCH_DIRS (tests; packagers). Raises ConfigError naming every
    place looked at when there is none: unlike stunmesh-go, a daemon never starts without one.
    """
    if config_dir is not None:
        directory = os.fspath(config_dir)
        for name in CONFIG_NAMES:
            candidate = os.path.join(directory, name)
            if _exists(candidate):
                return candidate
        missing = "no such directory" if not _exists(directory) else "no config.yaml or config.yml"
        raise ConfigError(f"{missing} (from --config-dir)", path=directory)
    searched: list[str] = []
    for entry in SEARCH_DIRS if search_dirs is None else search_dirs:
        base = _expand_env(entry)
        if base is None:
            continue
        for name in CONFIG_NAMES:
            candidate = _absolute(os.path.join(base, name))
            searched.append(candidate)
            if _exists(candidate):
                return candidate
    raise ConfigError(
        f"no configuration file found; searched {', '.join(searched) or 'nothing'} "
        "(use -c FILE or --config-dir DIR)"
    )


def load_config(
    path: StrPath | None = None,
    *,
    config_dir: StrPath | None = None,
    search_dirs: Sequence[str] | None = None,
) -> Config:
    """Read, parse and validate the configuration: ``path``, or the one find_config finds.

    Raises ConfigError (one line: file, line, key path, reason) for every problem, including a
    missing, unreadable, oversized or non-UTF-8 file. Blocking: see the note above.
    """
    file = os.fspath(path) if path is not None else find_config(config_dir, search_dirs=search_dirs)
    text = _read_text(file)
    return replace(parse_config(text, source=file), source=file)


def parse_config(text: str, *, source: str) -> Config:
    """Parse and validate configuration text; ``source`` names it in messages and warnings.

    The result's ``source`` is None (load_config sets the file).
    """
    return _Parser(source).parse(text)


def locate_key(path: StrPath, *segments: str) -> int | None:
    """The line of the deepest key of ``segments`` present in the file, e.g.
    ``locate_key(p, "plugins", "cf", "token")``; None when unknown or unreadable.

    For messages about problems found after parsing (a store refusing its options).
    """
    try:
        node = safeyaml.compose(_read_text(os.fspath(path)))
    except (ConfigError, yaml.YAMLError, safeyaml.YamlLimit):
        return None
    line = None
    for segment in segments:
        if not isinstance(node, yaml.MappingNode):
            break
        found = [(k, v) for k, v in node.value if getattr(k, "value", None) == segment]
        if not found:
            break
        key_node, node = found[-1]
        line = _line(key_node)
    return line


# --- helpers ---------------------------------------------------------------------------------


def _quote(text: str, limit: int = 60) -> str:
    """Echo user text safely: double-quoted, escaped onto one line, shortened."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return json.dumps(text)


def _join(parent: str, name: str) -> str:
    """Key path: ``interfaces.wg0.peers.laptop``, or ``peers["a.b"]`` for awkward names."""
    if _SAFE_SEGMENT.fullmatch(name):
        return f"{parent}.{name}" if parent else name
    return f"{parent}[{_quote(name)}]"


def _line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _is_null(node: Any) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _kind(node: Any) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node is None:
        return "missing"
    return _KINDS.get(node.tag, "a tagged value")


def _shown(node: Any) -> str:
    """The kind of a value, and the value itself for a scalar of a non-secret field."""
    if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
        return f"{_kind(node)} {_quote(str(node.value))}"
    return _kind(node)


def _given(node: Any) -> str:
    """A value as written (quoted), or its kind when it is not a scalar."""
    if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
        return _quote(str(node.value))
    return _kind(node)


def _problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's reason without its source snippet (which could show a secret), on one line."""
    problem, context = exc.problem or "", exc.context or ""
    cm, pm = exc.context_mark, exc.problem_mark
    if context and cm is not None and pm is not None and cm.line != pm.line:
        context += f" started on line {cm.line + 1}"
    if problem.startswith("but ") and context:  # "expected X ... but found Y"
        text = f"{context}, {problem}"
    elif problem and context:
        text = f"{problem} ({context})"
    else:
        text = problem or context or "invalid YAML"
    if "<block end>" in text or "block mapping" in text or "block collection" in text:
        text += "; check the indentation"
    return " ".join(text.split())


def _expand_env(entry: str) -> str | None:
    """``$VAR``/``${VAR}`` expanded; None when a variable is unset or empty (skip the entry)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        text = os.environ.get(match.group(1) or match.group(2), "")
        missing = missing or not text
        return text

    expanded = _ENV_REF.sub(value, entry)
    return None if missing or not expanded else expanded


def _exists(path: str) -> bool:
    """Like Go's os.Stat == nil: an unreadable directory on the way means "not here"."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _absolute(path: str) -> str:
    """Like Path.absolute: the working directory in front, "." parts dropped, ".." kept (it
    may follow a symlink, so only the kernel may resolve it)."""
    if not os.path.isabs(path):
        try:
            path = os.path.join(os.getcwd(), path)
        except OSError:  # the working directory was removed
            pass
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts)


def _read_text(file: str) -> str:
    """The file's text, bounded: a regular file (a FIFO or device is refused at once, never
    waited on), at most MAX_CONFIG_BYTES, UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigError("no such file", path=file) from None
    except IsADirectoryError:
        raise ConfigError(
            "is a directory, not a file (use --config-dir DIR for a directory)", path=file
        ) from None
    except PermissionError:
        raise ConfigError("cannot be read: permission denied", path=file) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot be read: {exc.strerror or type(exc).__name__}", path=file
        ) from None
    except ValueError:  # a NUL in the name
        raise ConfigError("is not a usable file name", path=file) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(
                "is a directory, not a file (use --config-dir DIR for a directory)", path=file
            )
        if not stat.S_ISREG(mode):
            raise ConfigError(f"is {_file_kind(mode)}, not a regular file", path=file)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot be read: {exc.strerror or type(exc).__name__}", path=file
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file", path=file
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"is not UTF-8 text (bad byte at offset {exc.start})", path=file, line=line
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


_Fields = dict[str, tuple[yaml.Node, yaml.Node]]  # key text -> (key node, value node)


class _Parser:
    """One pass over one document: collects warnings, raises the first error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[str] = []
        self._loader = yaml.SafeLoader("")  # for merge keys and plugin option values
        # mappings already read (merges applied in place): id(node) -> fields; the tree is
        # alive for the whole parse, so an id names one node
        self._pairs_done: dict[int, _Fields] = {}

    # -- reporting --

    def _error(self, where: Any, key: str | None, message: str) -> ConfigError:
        line = where if isinstance(where, int) or where is None else _line(where)
        return ConfigError(message, path=self.source, key=key or None, line=line)

    def _warn(self, where: Any, key: str | None, message: str) -> None:
        self.warnings.append(str(self._error(where, key, message)))

    # -- document --

    def parse(self, text: str) -> Config:
        try:
            return self._document(text)
        except RecursionError:
            raise self._error(None, None, "nested too deeply, or refers to itself") from None

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            root = safeyaml.compose(text)
            if root is not None:
                safeyaml.inspect(root, _join)
            return root
        except safeyaml.YamlLimit as exc:
            raise self._error(exc.line, exc.key, exc.reason) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise self._error(line, None, f"YAML syntax error: {_problem(exc)}") from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            char = exc.character
            code = ord(char) if isinstance(char, str) else int(char)
            raise self._error(
                line, None, f"YAML syntax error: character #x{code:04x} is not allowed"
            ) from None
        except yaml.YAMLError as exc:
            raise self._error(None, None, f"YAML syntax error ({type(exc).__name__})") from None

    def _document(self, text: str) -> Config:
        root = self._compose(text)
        if root is None or _is_null(root):
            raise self._error(None, None, "the file is empty: it configures nothing")
        if not isinstance(root, yaml.MappingNode):
            raise self._error(
                root, None, f"the top level must be a mapping of settings, not {_kind(root)}"
            )
        top = self._fields(root, "", _TOP_KEYS)
        refresh = self._duration_key(
            top, "refresh_interval", "", DEFAULT_REFRESH_INTERVAL, positive=True
        )
        log = self._log(top)
        stun = self._stun(top, root)
        ping_monitor = self._ping_monitor(top)
        plugins = self._plugins(top)
        interfaces = self._interfaces(top, root, plugins)
        return Config(
            source=None,
            refresh_interval=refresh,
            log=log,
            stun_servers=stun,
            ping_monitor=ping_monitor,
            interfaces=interfaces,
            plugins=plugins,
            warnings=tuple(self.warnings),
        )

    # -- structure --

    def _pairs(self, node: yaml.Node | None, key: str, what: str = "a mapping") -> _Fields:
        """A mapping's entries by key text. Null is empty; merge keys (<<) are applied;
        a repeated key is an error (stunmesh-go's YAML parser refuses it too)."""
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self._error(node, key, f"must be {what} (key: value lines), not {_kind(node)}")
        done = self._pairs_done.get(id(node))
        if done is not None:  # read before (an alias, or a second look): merges are applied
            return done
        seen: dict[str, yaml.Node] = {}
        for knode, _ in node.value:
            if knode.tag == _MERGE:
                continue
            if not isinstance(knode, yaml.ScalarNode):
                raise self._error(knode, key, f"has a key that is {_kind(knode)}, not a name")
            if knode.value in seen:
                raise self._error(
                    knode,
                    _join(key, knode.value),
                    f"is given twice (first on line {_line(seen[knode.value])})",
                )
            seen[knode.value] = knode
        try:
            self._loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            detail = _problem(exc) if isinstance(exc, yaml.MarkedYAMLError) else "invalid"
            raise self._error(node, key, f"has an unusable merge key (<<): {detail}") from None
        fields: _Fields = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise self._error(knode, key, f"has a key that is {_kind(knode)}, not a name")
            fields[str(knode.value)] = (knode, vnode)
        self._pairs_done[id(node)] = fields
        return fields

    def _fields(
        self,
        node: yaml.Node | None,
        key: str,
        known: Collection[str],
        noop: Mapping[str, str] | None = None,
    ) -> _Fields:
        """Like _pairs, keeping the known keys; others are warned about and dropped."""
        fields: _Fields = {}
        for name, (knode, vnode) in self._pairs(node, key).items():
            path = _join(key, name)
            if name in known:
                fields[name] = (knode, vnode)
            elif noop is not None and name in noop:
                self._warn(knode, path, f"accepted for stunmesh-go compatibility but {noop[name]}")
            else:
                hint = _close_match(name, known)
                self._warn(knode, path, "unknown key, ignored" + hint)
        return fields

    @staticmethod
    def _get(fields: _Fields, name: str) -> yaml.Node | None:
        """The value node, or None when absent or null (stunmesh-go keeps defaults then)."""
        entry = fields.get(name)
        if entry is None or _is_null(entry[1]):
            return None
        return entry[1]

    # -- scalars --

    def _text(self, node: yaml.Node, key: str, what: str = "text") -> str:
        """A scalar as written (YAML 1.2 reads `on`/`yes` as text, as stunmesh-go does)."""
        if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
            return str(node.value)
        raise self._error(node, key, f"must be {what}, not {_kind(node)}")

    def _bool(self, node: yaml.Node, key: str, *, go_strings: bool = False) -> bool:
        """true or false. As stunmesh-go's weak decoding: also a quoted Go boolean ("true",
        "1", "f", ...) or a number (non-zero is true), each with a warning naming the strict
        form. ``go_strings``: the ``dedup`` rule instead (stunmesh-go's parseDedup): only
        true, "true" and "1" turn it on; anything else is false, with a warning."""
        if go_strings:
            return self._dedup(node, key)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _BOOL:
                low = str(node.value).lower()
                if low in ("true", "false"):
                    return low == "true"
                raise self._error(
                    node,
                    key,
                    f"write true or false: YAML parsers disagree on {_quote(node.value)} "
                    "(stunmesh-go reads it as text, which is not a boolean)",
                )
            if node.tag == _STR and node.value in _GO_BOOLS:
                value = _GO_BOOLS[node.value]
                self._weak(node, key, node.value, str(value).lower())
                return value
            if node.tag in (_INT, _FLOAT) and _finite(node.value):
                value = float(self._loader.construct_object(node)) != 0
                self._weak(node, key, node.value, str(value).lower())
                return value
        raise self._error(node, key, f"must be true or false, not {_shown(node)}")

    def _dedup(self, node: yaml.Node, key: str) -> bool:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            low = str(node.value).lower()
            if low in ("true", "false"):
                return low == "true"
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR and node.value in ("true", "1"):
            self._weak(node, key, node.value, "true")
            return True
        self._warn(
            node,
            key,
            f"{_given(node)} turns dedup off (stunmesh-go reads anything but true, "
            '"true" or "1" as false); write true or false',
        )
        return False

    def _weak(self, node: yaml.Node, key: str, given: str, strict: str) -> None:
        """A weakly typed value stunmesh-go accepts: accepted, with the strict form named."""
        self._warn(
            node,
            key,
            f"{_quote(given)} read as {strict} for stunmesh-go compatibility; write {strict}",
        )

    def _int(self, node: yaml.Node, key: str) -> int:
        """A whole number; a quoted one (``"5"``) too, with a warning, as stunmesh-go reads it.
        The length is checked before converting (a 5,000-digit number is refused, not parsed)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            return int(self._loader.construct_yaml_int(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            text = node.value.strip()
            if _DECIMAL.fullmatch(text) and len(text) <= safeyaml.MAX_NUMBER_CHARS:
                value = int(text)
                self._weak(node, key, node.value, str(value))
                return value
        raise self._error(node, key, f"must be a whole number, not {_shown(node)}")

    def _list(self, node: yaml.Node, key: str, what: str) -> list[tuple[str, yaml.Node]]:
        """A list of texts, each with its node. As stunmesh-go: one text is a list of its
        comma-separated parts (with a warning naming the list form)."""
        if isinstance(node, yaml.SequenceNode):
            return [
                (self._text(item, f"{key}[{i}]", what=what), item)
                for i, item in enumerate(node.value)
            ]
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            parts = [part.strip() for part in node.value.split(",")]
            items = [part for part in parts if part]
            shown = "[" + ", ".join(items) + "]"
            self._warn(
                node,
                key,
                f"{_quote(node.value)} read as the list {_quote(shown)} for stunmesh-go "
                f"compatibility; write a YAML list: {shown}",
            )
            return [(item, node) for item in items]
        raise self._error(node, key, f"must be a list of {what}, not {_kind(node)}")

    def _duration(self, node: yaml.Node, key: str, *, seconds_ok: bool = False) -> float:
        """A Go duration string. Bare numbers: seconds where stunmesh-go reads them so
        (plugin timeout), 0 anywhere, an error elsewhere -- stunmesh-go would silently read
        ``refresh_interval: 600`` as 600 nanoseconds."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            raise self._error(node, key, f'must be a duration like "90s", not {_kind(node)}')
        if node.tag in (_INT, _FLOAT):
            number = float(self._loader.construct_object(node))
            if not math.isfinite(number):
                raise self._error(node, key, f"must be a finite duration, not {node.value}")
            if abs(number) * 1e9 >= _NS_LIMIT:  # past Go's int64 nanoseconds (292 years)
                raise self._error(node, key, f"duration {node.value} s is out of range")
            if seconds_ok or number == 0:
                return number
            raise self._error(
                node,
                key,
                f"a bare number is not a duration: write {_quote(node.value + 's')} for seconds "
                f"{_UNITS_HINT}; stunmesh-go would read {node.value} as nanoseconds",
            )
        try:
            return parse_duration(str(node.value))
        except ValueError as exc:
            raise self._error(node, key, str(exc)) from None

    def _duration_key(
        self,
        fields: _Fields,
        name: str,
        parent: str,
        default: float,
        *,
        positive: bool,
        seconds_ok: bool = False,
    ) -> float:
        node = self._get(fields, name)
        if node is None:
            return default
        key = _join(parent, name)
        seconds = self._duration(node, key, seconds_ok=seconds_ok)
        if positive and seconds <= 0:
            raise self._error(node, key, f"must be longer than zero, not {_quote(node.value)}")
        if seconds < 0:
            raise self._error(node, key, f"must not be negative, not {_quote(node.value)}")
        return seconds

    def _choice(
        self, fields: _Fields, name: str, parent: str, choices: Sequence[str], default: str
    ) -> str:
        node = self._get(fields, name)
        if node is None:
            return default
        key = _join(parent, name)
        text = self._text(node, key, what="one of " + ", ".join(choices))
        if text == "":  # stunmesh-go: empty means the default
            return default
        if text not in choices:
            raise self._error(node, key, f"must be one of {', '.join(choices)}, not {_quote(text)}")
        return text

    # -- sections --

    def _log(self, top: _Fields) -> LogConfig:
        fields = self._fields(self._get(top, "log"), "log", ("level", "format"))
        level = "info"
        node = self._get(fields, "level")
        if node is not None:
            text = self._text(node, "log.level", what="a log level")
            if text.strip():
                try:
                    level = normalize_log_level(text)
                except ValueError as exc:
                    raise self._error(node, "log.level", str(exc)) from None
                name = zerolog_level_name(text)
                if name is not None:
                    self._warn(
                        node,
                        "log.level",
                        f"{_quote(text)} is a zerolog level number for stunmesh-go "
                        f"compatibility; write {name} (stunmeshd logs at {level!r})",
                    )
                elif text.strip().lower() in ZEROLOG_LEVELS:
                    self._warn(
                        node,
                        "log.level",
                        f"{_quote(text)} is a stunmesh-go (zerolog) level; "
                        f"stunmeshd logs at {level!r}",
                    )
        fmt = self._choice(fields, "format", "log", LOG_FORMATS, "console")
        return LogConfig(level=level, format=fmt)

    def _stun(self, top: _Fields, root: yaml.Node) -> tuple[str, ...]:
        """stunmesh-go's rules: stun.address (deprecated) first, then stun.addresses, without
        repeats; no servers at all -> the default with a warning; an explicitly empty list
        (and no address) -> an error."""
        stun_node = self._get(top, "stun")
        fields = self._fields(stun_node, "stun", ("address", "addresses"))
        servers: list[str] = []
        address_node = self._get(fields, "address")
        if address_node is not None:
            address = self._text(address_node, "stun.address", what='a "host:port" address')
            if address:
                servers.append(self._stun_address(address, address_node, "stun.address"))
                self._warn(
                    address_node,
                    "stun.address",
                    "is deprecated: it is used first, before stun.addresses; "
                    "list all servers under stun.addresses instead",
                )
        list_node = self._get(fields, "addresses")
        if list_node is None and not servers:
            self._warn(
                stun_node if stun_node is not None else root,
                "stun.addresses",
                f"no STUN server configured; using {DEFAULT_STUN_SERVER}",
            )
            return (DEFAULT_STUN_SERVER,)
        if list_node is not None:
            items = self._list(list_node, "stun.addresses", what='"host:port" addresses')
            listed = isinstance(list_node, yaml.SequenceNode)
            usable = [(i, text, item) for i, (text, item) in enumerate(items) if text]
            if not usable and not servers:
                raise self._error(
                    list_node,
                    "stun.addresses",
                    "has no addresses: stunmeshd needs at least one STUN server "
                    f"(remove the key to use {DEFAULT_STUN_SERVER})",
                )
            for index, text, item in usable:
                key = f"stun.addresses[{index}]" if listed else "stun.addresses"
                servers.append(self._stun_address(text, item, key))
        return tuple(dict.fromkeys(servers))

    def _stun_address(self, text: str, node: yaml.Node, key: str) -> str:
        host, colon, port = text.rpartition(":")
        if (
            not colon
            or not host
            or not (port.isascii() and port.isdigit() and len(port) <= 5)
            or not 0 < int(port) < 65536
        ):
            raise self._error(
                node,
                key,
                f'must be "host:port" with a port from 1 to 65535, not {_quote(text)}',
            )
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise self._error(
                    node, key, f"has an invalid IPv6 address in brackets: {_quote(text)}"
                ) from None
        elif ":" in host or not host.strip() or any(c.isspace() for c in host):
            raise self._error(
                node,
                key,
                f'must be "host:port" (IPv6 in brackets, like "[2001:db8::1]:3478"), '
                f"not {_quote(text)}",
            )
        return text

    def _ping_monitor(self, top: _Fields) -> PingMonitorConfig:
        key = "ping_monitor"
        fields = self._fields(self._get(top, key), key, ("interval", "timeout", "fixed_retries"))
        defaults = PingMonitorConfig()
        retries = defaults.fixed_retries
        node = self._get(fields, "fixed_retries")
        if node is not None:
            retries = self._int(node, "ping_monitor.fixed_retries")
            if retries < 0:
                raise self._error(node, "ping_monitor.fixed_retries", "must not be negative")
        return PingMonitorConfig(
            interval=self._duration_key(fields, "interval", key, defaults.interval, positive=True),
            timeout=self._duration_key(fields, "timeout", key, defaults.timeout, positive=True),
            fixed_retries=retries,
        )

    def _plugins(self, top: _Fields) -> dict[str, PluginConfig]:
        plugins: dict[str, PluginConfig] = {}
        for name, (knode, vnode) in self._pairs(self._get(top, "plugins"), "plugins").items():
            path = _join("plugins", name)
            fields = self._pairs(vnode, path, what="a mapping with a type")
            type_node = self._get(fields, "type")
            if type_node is None:
                raise self._error(knode, f"{path}.type", "is required: builtin, exec or shell")
            ptype = self._text(type_node, f"{path}.type", what="builtin, exec or shell")
            if ptype not in PLUGIN_TYPES:
                raise self._error(
                    type_node,
                    f"{path}.type",
                    f"must be builtin, exec or shell, not {_quote(ptype)}",
                )
            builtin = None
            if ptype == "builtin":
                builtin = self._builtin_name(fields, knode, path)
            elif "name" in fields:
                self._warn(fields["name"][0], f"{path}.name", f"not used by {ptype} plugins")
            command = self._command(fields, knode, path, ptype)
            args = self._args(fields, path, ptype)
            dedup = False
            node = self._get(fields, "dedup")
            if node is not None:
                dedup = self._bool(node, f"{path}.dedup", go_strings=True)
                if dedup and builtin == "opendht":
                    self._warn(
                        node,
                        f"{path}.dedup",
                        "ignored: OpenDHT values expire after 10 minutes, so an unchanged "
                        "endpoint is re-published anyway (with dedup, stunmesh-go lets the "
                        "record lapse)",
                    )
            timeout: float | None = None  # unset: the store's own default
            if self._get(fields, "timeout") is not None:
                timeout = self._duration_key(
                    fields, "timeout", path, 0.0, positive=True, seconds_ok=True
                )
            options: dict[str, Any] = {}
            for option, (oknode, ovnode) in fields.items():
                if option in GENERIC_PLUGIN_KEYS:
                    continue
                okey = _join(path, option)
                if ptype != "builtin":
                    self._warn(oknode, okey, f"not used by {ptype} plugins, ignored")
                options[option] = self._option_value(ovnode, okey)
            plugins[name] = PluginConfig(
                name=name,
                type=ptype,
                builtin=builtin,
                command=command,
                args=args,
                dedup=dedup,
                timeout=timeout,
                options=options,
            )
        return plugins

    def _builtin_name(self, fields: _Fields, knode: yaml.Node, path: str) -> str:
        # imported here: the registry builds stores from this module's PluginConfig
        from stunmeshd.stores.registry import builtin_names, is_builtin

        node = self._get(fields, "name")
        if node is None:
            examples = ", ".join(sorted(builtin_names()))
            raise self._error(
                knode, f"{path}.name", f"is required for a builtin plugin ({examples})"
            )
        builtin = self._text(node, f"{path}.name", what="a built-in store name")
        if not is_builtin(builtin):
            raise self._error(
                node,
                f"{path}.name",
                f"unknown built-in store {_quote(builtin)} "
                f"(known: {', '.join(sorted(builtin_names()))})",
            )
        return builtin

    def _command(self, fields: _Fields, knode: yaml.Node, path: str, ptype: str) -> str | None:
        node = self._get(fields, "command")
        if ptype == "builtin":
            if node is not None:
                self._warn(fields["command"][0], f"{path}.command", "not used by builtin plugins")
            return None
        if node is None:
            raise self._error(
                knode, f"{path}.command", f"is required for an {ptype} plugin: the program to run"
            )
        command = self._text(node, f"{path}.command", what="a program to run")
        if not command.strip():
            raise self._error(node, f"{path}.command", "must not be empty")
        return command

    def _args(self, fields: _Fields, path: str, ptype: str) -> tuple[str, ...]:
        node = self._get(fields, "args")
        if node is None:
            return ()
        key = f"{path}.args"
        if not isinstance(node, yaml.SequenceNode):
            raise self._error(node, key, f"must be a list of arguments, not {_kind(node)}")
        args = tuple(
            self._text(item, f"{key}[{i}]", what="an argument") for i, item in enumerate(node.value)
        )
        if ptype == "builtin":
            self._warn(fields["args"][0], key, "not used by builtin plugins")
        return args

    def _option_value(self, node: yaml.Node, key: str) -> Any:
        """A backend option as plain data. Its value may be a secret: never echoed."""
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            detail = _problem(exc) if isinstance(exc, yaml.MarkedYAMLError) else "invalid"
            raise self._error(node, key, f"cannot be read: {detail}") from None
        except (ValueError, OverflowError, TypeError) as exc:  # e.g. a date like 2001-13-45
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self._error(node, key, f"cannot be read: {detail}") from None

    def _interfaces(
        self, top: _Fields, root: yaml.Node, plugins: Mapping[str, PluginConfig]
    ) -> dict[str, InterfaceConfig]:
        entries = self._pairs(self._get(top, "interfaces"), "interfaces")
        if not entries:
            where = top["interfaces"][0] if "interfaces" in top else root
            self._warn(where, "interfaces", "no interfaces configured: there is nothing to do")
        interfaces: dict[str, InterfaceConfig] = {}
        for ifname, (knode, vnode) in entries.items():
            path = _join("interfaces", ifname)
            if (
                not ifname
                or len(ifname.encode()) > 15
                or ifname in (".", "..")
                or any(c in "/:" or c.isspace() for c in ifname)
            ):
                raise self._error(
                    knode,
                    path,
                    f"{_quote(ifname)} is not a Linux interface name "
                    "(1 to 15 bytes, no '/', ':' or spaces)",
                )
            self._platform_keys(self._pairs(vnode, path), path)
            fields = self._fields(
                vnode, path, ("protocol", "peers", *_PORT_MAPPING_KEYS), noop=_LINUX_NOOP_KEYS
            )
            protocol = self._choice(fields, "protocol", path, INTERFACE_PROTOCOLS, "ipv4")
            peers: dict[str, PeerConfig] = {}
            disabled: dict[str, DisabledPeer] = {}
            by_key: dict[bytes, str] = {}
            peers_path = f"{path}.peers"
            peer_entries = self._pairs(self._get(fields, "peers"), peers_path)
            if not peer_entries:
                self._warn(
                    knode, path, "has no peers: its endpoint is discovered but sent to nobody"
                )
            for label, (pknode, pvnode) in peer_entries.items():
                peer = self._peer(label, pknode, pvnode, peers_path, plugins)
                if isinstance(peer, PeerConfig) and peer.public_key in by_key:
                    peer = DisabledPeer(
                        label=label,
                        reason=f"has the same public key as peer {_quote(by_key[peer.public_key])}"
                        ", which runs instead (stunmesh-go keeps only one of them)",
                        public_key=peer.public_key,
                        plugin=peer.plugin,
                        protocol=peer.protocol,
                        line=_line(pknode),
                    )
                if isinstance(peer, DisabledPeer):
                    self._warn(peer.line, _join(peers_path, label), f"peer disabled: {peer.reason}")
                    disabled[label] = peer
                    continue
                by_key[peer.public_key] = label
                peers[label] = peer
            interfaces[ifname] = InterfaceConfig(
                name=ifname,
                protocol=protocol,
                peers=peers,
                disabled=disabled,
                **self._port_mapping(fields, path),
            )
        return interfaces

    def _port_mapping(self, fields: _Fields, path: str) -> dict[str, Any]:
        """``port_mapping`` and ``port_mapping_lifetime`` (stunmeshd-only keys)."""
        mode = self._choice(fields, "port_mapping", path, PORT_MAPPING_MODES, "auto")
        lifetime = self._duration_key(
            fields, "port_mapping_lifetime", path, PORT_MAPPING_LIFETIME, positive=True
        )
        low, high = PORT_MAPPING_LIFETIME_RANGE
        if not low <= lifetime <= high:
            node = self._get(fields, "port_mapping_lifetime")
            raise self._error(
                node,
                _join(path, "port_mapping_lifetime"),
                f"must be between {low:g}s and {high:g}s, not {_quote(node.value if node else '')}",
            )
        return {"port_mapping": mode, "port_mapping_lifetime": lifetime}

    def _platform_keys(self, fields: _Fields, path: str) -> None:
        """stunmesh-go's keys for other platforms do nothing here, but a file stunmesh-go
        refuses for them (``proxy.listen: 70000``) is refused here too."""
        proxy = self._get(fields, "proxy")
        if proxy is not None:
            proxy_path = f"{path}.proxy"
            proxy_fields = self._pairs(proxy, proxy_path)
            for name in ("listen", "fib"):
                node = self._get(proxy_fields, name)
                if node is None:
                    continue
                value = self._int(node, f"{proxy_path}.{name}")
                if not 0 <= value <= 65535:
                    raise self._error(
                        node, f"{proxy_path}.{name}", f"must be from 0 to 65535, not {value}"
                    )
            node = self._get(proxy_fields, "enabled")
            if node is not None:
                self._bool(node, f"{proxy_path}.enabled")
        node = self._get(fields, "listen_interfaces")
        if node is not None:
            self._list(node, f"{path}.listen_interfaces", what="interface names")
        node = self._get(fields, "listen_default_route")
        if node is not None:
            self._bool(node, f"{path}.listen_default_route")

    def _peer(
        self,
        label: str,
        knode: yaml.Node,
        vnode: yaml.Node,
        parent: str,
        plugins: Mapping[str, PluginConfig],
    ) -> PeerConfig | DisabledPeer:
        """The peer, or why it cannot run: what stunmesh-go skips (a missing or bad key) or
        fails at run time (no such plugin) disables the peer; what it refuses is an error."""
        path = _join(parent, label)
        fields = self._fields(vnode, path, _PEER_KEYS)
        reasons: list[str] = []
        key_node = self._get(fields, "public_key")
        public_key: bytes | None = None
        if key_node is None:
            reasons.append("has no public_key (the peer's WireGuard public key, as `wg` prints it)")
        else:
            public_key, problem = self._public_key(key_node, f"{path}.public_key")
            if problem:
                reasons.append(problem)
        plugin = ""
        plugin_node = self._get(fields, "plugin")
        if plugin_node is None:
            reasons.append("has no plugin (the name of an entry under plugins)")
        else:
            plugin = self._text(plugin_node, f"{path}.plugin", what="a plugin name")
            if plugin not in plugins:
                defined = ", ".join(sorted(plugins)) if plugins else "none are defined"
                reasons.append(
                    f"names plugin {_quote(plugin)}, which is not under plugins ({defined})"
                )
        description_node = self._get(fields, "description")
        description = (
            self._text(description_node, f"{path}.description")
            if description_node is not None
            else ""
        )
        protocol = self._choice(fields, "protocol", path, PEER_PROTOCOLS, "ipv4")
        ping = self._ping(self._get(fields, "ping"), f"{path}.ping")
        if reasons or public_key is None:
            return DisabledPeer(
                label=label,
                reason="; ".join(reasons),
                public_key=public_key,
                plugin=plugin,
                protocol=protocol,
                line=_line(knode),
            )
        return PeerConfig(
            label=label,
            public_key=public_key,
            plugin=plugin,
            protocol=protocol,
            description=description,
            ping=ping,
        )

    def _public_key(self, node: yaml.Node, key: str) -> tuple[bytes | None, str]:
        """32 bytes from standard base64 with padding (Go's StdEncoding, which also skips line
        breaks), or None and why not. The text is never echoed: it may be a private key."""
        text = self._text(node, key, what="a base64 WireGuard public key")
        compact = text.replace("\r", "").replace("\n", "")
        raw = _b64(compact)
        if (
            raw is None
            and "=" not in compact
            and len(_b64(compact + "=" * (-len(compact) % 4)) or b"") == 32
        ):
            return None, "public_key lacks its '=' padding (44 characters, ending in '=')"
        if raw is None:
            return None, (
                "public_key is not valid base64 (a WireGuard public key is 44 characters "
                "ending in '=')"
            )
        if len(raw) != 32:
            return None, f"public_key decodes to {len(raw)} bytes, not 32"
        return raw, ""

    def _ping(self, node: yaml.Node | None, path: str) -> PingConfig:
        if node is None:
            return PingConfig()
        fields = self._fields(node, path, _PING_KEYS)
        enabled_node = self._get(fields, "enabled")
        enabled = self._bool(enabled_node, f"{path}.enabled") if enabled_node else False
        target = ""
        target_node = self._get(fields, "target")
        if target_node is not None:
            target = self._text(target_node, f"{path}.target", what="an IP address or host name")
            if not _is_ip(target) and not _HOST_NAME.fullmatch(target):
                if enabled:
                    self._warn(
                        target_node,
                        f"{path}.target",
                        f"{_quote(target)} is neither an IP address nor a host name: this peer "
                        "is not ping-monitored (stunmesh-go fails to resolve it too)",
                    )
                enabled, target = False, ""
        elif enabled:
            self._warn(
                node,
                f"{path}.target",
                "is missing, so ping.enabled has no effect: this peer is not ping-monitored "
                "(as in stunmesh-go)",
            )
            enabled = False
        return PingConfig(
            enabled=enabled,
            target=target,
            interval=self._duration_key(fields, "interval", path, 0.0, positive=False),
            timeout=self._duration_key(fields, "timeout", path, 0.0, positive=False),
        )


def _finite(text: str) -> bool:
    """A YAML number that converts safely (its length is bounded by safeyaml)."""
    return ".inf" not in text.lower() and ".nan" not in text.lower()


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _peer_key(iface: InterfaceConfig, label: str) -> str:
    return _join(f"{_join('interfaces', iface.name)}.peers", label)


def _close_match(name: str, known: Collection[str]) -> str:
    import difflib  # only for a mistyped key: not worth its memory in every daemon

    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {match[0]}?)" if match else ""
