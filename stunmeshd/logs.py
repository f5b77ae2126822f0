"""Logging set-up: one line per event on stderr, ``console`` (journald-friendly) or ``json``.

Messages carry ``key=value`` context. journald stamps time and unit itself, so the console
format does not repeat them. When stderr is journald's stream (systemd sets ``JOURNAL_STREAM``),
each line starts with the syslog ``<N>`` priority prefix, which journald strips and stores as
the entry's PRIORITY: ``journalctl -p warning`` then shows warnings, not every line as info.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


# logging level -> syslog priority (sd-daemon(3)'s prefixes)
SYSLOG_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalPriorityFormatter(logging.Formatter):
    """Prefixes another formatter's lines with ``<N>``, the priority journald reads."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITIES.get(record.levelno, 6)
        # every line of a multi-line message (a traceback) keeps the record's priority
        return "\n".join(f"<{priority}>{line}" for line in self.inner.format(record).split("\n"))


def stderr_is_journal() -> bool:
    """True when stderr is the journald stream systemd named in ``JOURNAL_STREAM`` (dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str = "info", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    if stderr_is_journal():
        formatter = JournalPriorityFormatter(formatter)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def current_level() -> str:
    """The root logger's level as ``set_level`` takes it ("debug", "info", "warning", "error")."""
    return logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()


def set_level(level: str) -> None:
    """Change the level at run time (D-Bus SetLogLevel); raises ValueError for unknown ones."""
    try:
        value = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; use one of {', '.join(sorted(LEVELS))}"
        ) from None
    logging.getLogger().setLevel(value)
    # third-party chatter stays at warning unless we debug
    for noisy in ("asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(value, logging.WARNING))


class Throttle:
    """Say a recurring problem at most once per ``interval`` seconds per key.

    A store fault repeats every cycle for every peer; one line a minute says it as well as a
    thousand. ``suppressed`` counts the silenced repeats, reported with the next line.
    """

    def __init__(
        self, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # key -> (said at, repeats since)

    def ready(self, key: str) -> int | None:
        """None to stay silent; else the number of repeats silenced since the last line."""
        now = self.clock()
        said, repeats = self._last.get(key, (float("-inf"), 0))
        if now - said < self.interval:
            self._last[key] = (said, repeats + 1)
            return None
        if len(self._last) > 1024:  # keys are store and endpoint names; bound them anyway
            self._last.clear()
        self._last[key] = (now, 0)
        return repeats

    def warning(self, logger: logging.Logger, key: str, msg: str, *args: object) -> bool:
        """Log ``msg`` at warning level unless said for ``key`` within the interval."""
        repeats = self.ready(key)
        if repeats is None:
            return False
        if repeats:
            msg += " (repeated %d times since the last warning)"
            args = (*args, repeats)
        logger.warning(msg, *args)
        return True
