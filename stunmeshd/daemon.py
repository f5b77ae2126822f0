"""The ``stunmeshd`` command line: options, configuration, then the service.

``stunmeshd --check`` validates like ``nginx -t`` / ``sshd -t`` so a packager's ExecStartPre or
an admin can test a file before (re)starting. It reads the file with the same loader the
daemon uses, so its verdict is the daemon's. Exit codes: 0 the file runs as written (warnings
may be printed), 1 it runs but some peers are disabled (each listed, as the daemon shows them
on the bus), 2 it will not run: the configuration or the command line is wrong (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import traceback
from dataclasses import replace

from stunmeshd import __version__
from stunmeshd.config import Config, PluginConfig, load_config, locate_key, normalize_log_level
from stunmeshd.errors import ConfigError
from stunmeshd.stores.registry import create_store

EXIT_OK = 0
EXIT_DISABLED = 1  # --check: runs, with some peers disabled
EXIT_FAILURE = 1
EXIT_CONFIG = 2

# A D-Bus address: transport ":" key=value pairs, alternatives separated by ";".
_BUS_ADDRESS = re.compile(r"[a-z][a-z0-9-]*:\S*")
_STORE_CLOSE_TIMEOUT = 5.0


class _CheckFailed(Exception):
    """A store could not be built for a reason other than its configuration."""


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's own formatter, told the terminal width rather than asking shutil for it.

    argparse builds a formatter for every ``add_argument``, and the default one imports
    shutil for the width, and zlib, bz2 and lzma with it: ~0.4 MB the daemon would hold for
    its whole life to print a help text it is almost never asked for.
    """
    columns = os.environ.get("COLUMNS", "")  # shutil's rule: COLUMNS, the terminal, 80
    if not columns.isdigit():
        try:
            columns = str(os.get_terminal_size(sys.stdout.fileno()).columns)
        except (OSError, ValueError):
            columns = "80"
    return argparse.HelpFormatter(prog, width=max(int(columns), 40) - 2)


def build_parser() -> argparse.ArgumentParser:
    """The command line; stunmesh-go's ``-c``/``--config-dir`` mean the same here."""
    parser = argparse.ArgumentParser(
        prog="stunmeshd",
        formatter_class=_help_formatter,
        description="Peer-to-peer WireGuard through NAT: STUN from WireGuard's own port, "
        "endpoints sealed and exchanged through existing key-value stores, state on D-Bus.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="read exactly this configuration file",
    )
    source.add_argument(
        "--config-dir",
        metavar="DIR",
        help="read config.yaml (or config.yml) from this directory",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, print warnings, and exit: 0 it runs, 1 it runs "
        "with some peers disabled (listed), 2 it will not run",
    )
    parser.add_argument(
        "--oneshot",
        action="store_true",
        help="run one discover/publish/fetch/apply cycle for every interface, then exit",
    )
    parser.add_argument(
        "--oneshot-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --oneshot: how long to wait for every peer's record (default 30)",
    )
    parser.add_argument(
        "--bus",
        type=_bus_argument,
        default="system",
        metavar="system|session|ADDRESS",
        help="the D-Bus bus to serve on (default: system), or a bus address such as "
        "unix:path=/run/dbus/test_socket",
    )
    parser.add_argument(
        "--log-level",
        type=_log_level_argument,
        metavar="LEVEL",
        help="override log.level: debug, info, warning (or warn), error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run stunmeshd; returns the process exit status.

    Config warnings are printed by ``--check``; on a normal start they travel in
    ``config.warnings`` and ``stunmeshd.service.run`` logs them once logging is set up.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    try:
        config = load_config(args.config, config_dir=args.config_dir)
        if args.log_level is not None:
            config = replace(config, log=replace(config.log, level=args.log_level))
        if args.check:
            for warning in config.warnings:
                _say(f"warning: {warning}")
            _check_logging()
            asyncio.run(check_stores(config))
    except ConfigError as exc:
        _say(str(exc))
        return EXIT_CONFIG
    except _CheckFailed as exc:
        _say(str(exc))
        return EXIT_CONFIG
    except Exception as exc:  # a bug must not print a traceback to an admin, unless asked
        _say(f"internal error while reading the configuration: {type(exc).__name__}: {exc!r}")
        if args.log_level == "debug":
            traceback.print_exc()
        return EXIT_CONFIG
    if args.check:
        return _verdict(config)
    return _start(config, args)


def _verdict(config: Config) -> int:
    """``--check``'s last word: OK, or runs with the disabled peers listed (stdout)."""
    disabled = config.disabled_peers()
    if not disabled:
        print(f"stunmeshd: configuration OK: {config.source} ({_summary(config)})")
        return EXIT_OK
    print(
        f"stunmeshd: configuration runs with {_count(len(disabled), 'peer')} disabled: "
        f"{config.source} ({_summary(config)})"
    )
    for line in disabled:
        print(f"stunmeshd: disabled: {line}")
    return EXIT_DISABLED


async def check_stores(config: Config) -> None:
    """Build every plugin's store, without I/O, and close it: bad backend options (a missing
    Cloudflare token, an unusable OpenDHT endpoint) fail ``--check``, not the first refresh.

    Raises ConfigError naming the file, plugin key and line.
    """
    for name, plugin in config.plugins.items():
        try:
            store = create_store(plugin)
        except ConfigError as exc:
            raise _in_file(exc, config, plugin) from None
        except Exception as exc:
            raise _CheckFailed(
                f"{config.source}: plugins.{name}: the store could not be built "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        try:
            async with asyncio.timeout(_STORE_CLOSE_TIMEOUT):
                await store.close()
        except Exception as exc:  # closing a store that did no I/O is not a config problem
            _say(f"warning: plugins.{name}: closing the checked store failed ({exc})")


def _start(config: Config, args: argparse.Namespace) -> int:
    from stunmeshd.service import run  # imported late: --check needs none of the runtime

    return run(config, args)


def _in_file(exc: ConfigError, config: Config, plugin: PluginConfig) -> ConfigError:
    """A store's ConfigError placed in the file: path, ``plugins.<name>.<option>``, line."""
    key = exc.key or f"plugins.{plugin.name}"
    if not key.startswith("plugins."):
        key = f"plugins.{plugin.name}.{key}"
    line = exc.line
    if line is None and config.source is not None:
        option = key.removeprefix(f"plugins.{plugin.name}").lstrip(".")
        segments = ("plugins", plugin.name, option) if option else ("plugins", plugin.name)
        line = locate_key(config.source, *segments)
    path = exc.path or (str(config.source) if config.source is not None else None)
    return ConfigError(exc.reason, path=path, key=key, line=line)


def _summary(config: Config) -> str:
    peers = sum(len(i.peers) for i in config.interfaces.values())
    disabled = sum(len(i.disabled) for i in config.interfaces.values())
    counts = ", ".join(
        _count(n, word)
        for n, word in (
            (len(config.interfaces), "interface"),
            (peers, "peer"),
            (len(config.plugins), "plugin"),
        )
    )
    return f"{counts}, {disabled} disabled" if disabled else counts


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _CheckFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"stunmeshd: {record.levelname.lower()}: {record.getMessage()}"


def _check_logging() -> None:
    """Stores validating their options log warnings: show them like the config's own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CheckFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _say(message: str) -> None:
    print(f"stunmeshd: {message}", file=sys.stderr)


def _bus_argument(value: str) -> str:
    if value in ("system", "session") or _BUS_ADDRESS.fullmatch(value):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r} is not system, session or a D-Bus address like unix:path=/run/bus"
    )


def _log_level_argument(value: str) -> str:
    try:
        return normalize_log_level(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
