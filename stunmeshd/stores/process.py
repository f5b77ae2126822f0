"""Running one store-plugin process: the plumbing the exec and shell stores share.

stunmesh-go runs the plugin with no timeout and unbounded output; a stuck or chatty plugin
would stall the daemon. Here every run is bounded in time and size, the plugin runs in its own
session so a timeout kills it *and* anything it started, and the process is always reaped.

The default limit (``DEFAULT_TIMEOUT``, 120 s) is long enough never to cut a working
stunmesh-go plugin short: its contrib OpenDHT scripts wait 15 s per proxy before failing over,
so 120 s covers a fail-over across eight proxies. A call still running after ``SLOW_CALL``
seconds is logged as slow (at most once a minute per plugin), so a plugin that is merely slow
is visible long before it is killed. ``timeout`` in the plugin's config sets another limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.logs import Throttle

log = logging.getLogger(__name__)

MAX_STDOUT = 64 * 1024  # a record is a few hundred bytes; anything near this is a broken plugin
MAX_STDERR = 4 * 1024  # kept (the tail) for error messages
PIPE_GRACE = 1.0  # s a plugin's leftover children may hold its output open after it exits
_MESSAGE_LEN = 400  # longest plugin text put into an error message
DEFAULT_TIMEOUT = 120.0  # s: contrib scripts fail over in 15 s steps; see the module doc
SLOW_CALL = 10.0  # s: a call running longer is reported as slow
_slow = Throttle(60.0)

_KEY_RE = re.compile(r"[0-9a-f]{40}")
_VALUE_RE = re.compile(r"(?:[0-9a-f]{2})+")


def check_key(key: str) -> None:
    """Keys are 40 lower-hex chars; anything else could inject into a plugin's input."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise StoreError("invalid key: expected 40 lower-case hex characters")


def check_value(value: str) -> None:
    """Values are non-empty lower hex (sealed records)."""
    if not isinstance(value, str) or not _VALUE_RE.fullmatch(value):
        raise StoreError("invalid value: expected lower-case hex")


def clean_text(raw: bytes | str, limit: int = _MESSAGE_LEN) -> str:
    """Plugin output made fit for a one-line log/error: printable, joined, bounded."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    lines = [
        "".join(c if c.isprintable() else "?" for c in line).strip() for line in text.splitlines()
    ]
    joined = "; ".join(line for line in lines if line)
    return joined if len(joined) <= limit else "..." + joined[-(limit - 3) :]


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What a finished plugin left: exit status, its stdout, the tail of its stderr."""

    returncode: int
    stdout: bytes
    stderr: str  # cleaned, one line, possibly truncated at the front

    def failure(self) -> str:
        """``exit status N`` (or ``killed by signal S``) plus stderr, for an error message."""
        if self.returncode < 0:
            what = f"killed by signal {-self.returncode}"
        else:
            what = f"exit status {self.returncode}"
        return f"{what}: {self.stderr}" if self.stderr else what


class _Collector(asyncio.SubprocessProtocol):
    """Collects bounded output; kills the process group when stdout overflows."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_stdout: int, max_stderr: int) -> None:
        self.max_stdout = max_stdout
        self.max_stderr = max_stderr
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_truncated = False
        self.overflow = False
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()  # exited and pipes closed
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            if self.overflow:
                return
            if len(self.stdout) + len(data) > self.max_stdout:
                self.overflow = True
                self.stdout.clear()
                self.abort()
                return
            self.stdout += data
        elif fd == 2:
            self.stderr += data
            if len(self.stderr) > self.max_stderr:
                del self.stderr[: len(self.stderr) - self.max_stderr]
                self.stderr_truncated = True

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    def abort(self) -> None:
        """Kill the plugin's whole session and drop our pipe ends (which ends ``finished``)."""
        if self.transport is None:
            return
        pid = self.transport.get_pid()
        try:
            # start_new_session: the plugin leads its own group, pgid == pid. The group
            # outlives the leader while a child remains, so the id cannot have been reused.
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.transport.close()


async def run_plugin(
    argv: Sequence[str],
    stdin: bytes,
    *,
    timeout: float,
    max_stdout: int = MAX_STDOUT,
    max_stderr: int = MAX_STDERR,
) -> ProcessResult:
    """Run ``argv`` (no shell), feed ``stdin`` then EOF, and collect its output.

    The environment is inherited, as stunmesh-go does. Raises StoreError when the program
    cannot be started, exceeds ``timeout`` seconds (it and its session are killed), or writes
    more than ``max_stdout`` bytes. A non-zero exit is *not* an error here: the caller decides.
    The process is reaped before this returns, also on cancellation.
    """
    program = argv[0]
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.subprocess_exec(
            lambda: _Collector(loop, max_stdout, max_stderr),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise StoreError(f"cannot run {program!r}: no such file") from None
    except PermissionError:
        raise StoreError(f"cannot run {program!r}: permission denied (not executable?)") from None
    except OSError as exc:
        raise StoreError(f"cannot run {program!r}: {exc.strerror or exc}") from None

    done = False
    try:
        stdin_pipe = transport.get_pipe_transport(0)
        assert isinstance(stdin_pipe, asyncio.WriteTransport)
        stdin_pipe.write(stdin)  # small: goes into the pipe buffer, never blocks
        stdin_pipe.close()  # EOF once written; a plugin that ignores stdin is fine
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(proto.exited)
                try:
                    await asyncio.wait_for(asyncio.shield(proto.finished), PIPE_GRACE)
                except TimeoutError:
                    log.warning(
                        "plugin %s left processes holding its output open; killed them", program
                    )
                    proto.abort()
                    await asyncio.shield(proto.finished)
        except TimeoutError:
            raise StoreError(f"{program!r} timed out after {timeout:g} s and was killed") from None
        if proto.overflow:
            raise StoreError(f"{program!r} output exceeds {max_stdout} bytes; killed")
        done = True
    finally:
        if not done:
            proto.abort()
            await asyncio.shield(proto.finished)
        transport.close()

    returncode = transport.get_returncode()
    assert returncode is not None
    stderr = clean_text(bytes(proto.stderr))
    if proto.stderr_truncated and stderr:
        stderr = "..." + stderr
    return ProcessResult(returncode, bytes(proto.stdout), stderr)


class ProgramStore:
    """Base of the stores that run a program per operation (exec, shell).

    Subclasses frame the request and read the answer; this holds the settings and checks
    them once, at construction, without touching the file system (the program is looked up
    when it runs, so a missing one is a StoreError naming it, not a start-up failure).
    """

    kind = "program"  # "exec" / "shell": used in messages

    def __init__(self, name: str, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.timeout = timeout

    @classmethod
    def from_config(cls, cfg: PluginConfig) -> Self:
        """Build from ``plugins.<name>``; ConfigError naming the key for bad settings."""
        where = f"plugins.{cfg.name}"
        if not isinstance(cfg.command, str) or not cfg.command.strip():
            raise ConfigError(
                f"command is required for a {cls.kind} plugin", key=f"{where}.command"
            )
        if "\0" in cfg.command:
            raise ConfigError("command contains a NUL byte", key=f"{where}.command")
        args = cfg.args
        if isinstance(args, str) or not all(isinstance(a, str) and "\0" not in a for a in args):
            raise ConfigError("args must be a list of strings", key=f"{where}.args")
        timeout = DEFAULT_TIMEOUT if cfg.timeout is None else cfg.timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                "timeout must be a positive number of seconds", key=f"{where}.timeout"
            )
        return cls(cfg.name, (cfg.command, *args), timeout=float(timeout))

    async def _run(self, op: str, stdin: bytes) -> ProcessResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = (
            loop.call_later(SLOW_CALL, self._still_running, op)
            if self.timeout > SLOW_CALL
            else None
        )
        try:
            return await run_plugin(self.argv, stdin, timeout=self.timeout)
        except StoreError as exc:
            raise self._error(op, str(exc)) from None
        finally:
            if slow is not None:
                slow.cancel()
            took = loop.time() - started
            if took > SLOW_CALL:
                log.info("%s plugin %s: %s took %.1f s", self.kind, self.name, op, took)

    def _still_running(self, op: str) -> None:
        _slow.warning(
            log,
            f"slow:{self.name}",
            "%s plugin %s is slow: %s still running after %.0f s (killed after %g s)",
            self.kind,
            self.name,
            op,
            SLOW_CALL,
            self.timeout,
        )

    def _error(self, op: str, detail: str) -> StoreError:
        return StoreError(f"{self.kind} plugin {self.name!r}: {op} failed: {detail}")

    async def close(self) -> None:
        """Nothing is kept open between operations."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.argv[0]!r}>"
