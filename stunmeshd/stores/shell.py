"""stunmesh-go's ``shell`` plugin protocol: shell-style assignments on stdin.

stdin: ``STUNMESH_ACTION=get|set``, ``STUNMESH_KEY=<40 hex>`` and, for set,
``STUNMESH_VALUE=<hex>``, one per line. A get's value is stdout with surrounding whitespace
trimmed (empty: no record). Exit 0 is success; otherwise the trimmed stderr is the error.

Like stunmesh-go, the command runs *without* a shell (``command`` + ``args``); "shell" names
the input format, which a script may ``eval`` — the reason keys and values are checked to be
plain hex before they are written.
"""

from __future__ import annotations

import logging

from stunmeshd.stores.base import check_key, check_value
from stunmeshd.stores.process import ProcessResult, ProgramStore

log = logging.getLogger(__name__)


class ShellStore(ProgramStore):
    """A store backed by a program speaking the shell protocol (``type: shell``)."""

    kind = "shell"

    async def _call(self, op: str, key: str, value: str | None = None) -> ProcessResult:
        lines = f"STUNMESH_ACTION={op}\nSTUNMESH_KEY={key}\n"
        if value is not None:
            lines += f"STUNMESH_VALUE={value}\n"
        result = await self._run(op, lines.encode())
        log.debug("plugin=%s op=%s key=%s rc=%d", self.name, op, key, result.returncode)
        if result.returncode != 0:
            raise self._error(op, result.failure())
        if result.stderr:
            log.debug("plugin=%s op=%s stderr=%s", self.name, op, result.stderr)
        return result

    async def get(self, key: str) -> str | None:
        """Trimmed stdout; None when the program prints nothing (no record)."""
        check_key(key)
        result = await self._call("get", key)
        try:
            value = result.stdout.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise self._error("get", "output is not UTF-8") from None
        return value or None

    async def set(self, key: str, value: str) -> None:
        check_key(key)
        check_value(value)
        await self._call("set", key, value)
