"""stunmesh-go's ``exec`` plugin protocol: one JSON request on stdin, one JSON answer on stdout.

Request (one line, then EOF): ``{"action":"get","key":K}`` / ``{"action":"set","key":K,"value":V}``.
Answer: the first JSON object on stdout, ``{"success":bool,"value":str,"error":str}``. A
non-zero exit or ``success: false`` is a failure. Field names match case-insensitively, like
Go's decoder, so a plugin written for stunmesh-go behaves the same here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from stunmeshd.errors import StoreError
from stunmeshd.stores.base import check_key, check_value
from stunmeshd.stores.process import ProgramStore, clean_text

log = logging.getLogger(__name__)

_SNIPPET = 80  # chars of unparseable output shown in an error


def _field(answer: dict[str, Any], name: str) -> Any:
    """Go's rule: keys match case-insensitively; the last matching key wins."""
    found = None
    for key, value in answer.items():
        if key.lower() == name:
            found = value
    return found


def parse_answer(stdout: bytes) -> tuple[bool, str, str]:
    """``(success, value, error)`` from the first JSON object on stdout; StoreError if none."""
    try:
        text = stdout.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        raise StoreError("answer is not UTF-8") from None
    if not text:
        raise StoreError("no answer on stdout")
    try:
        answer, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        raise StoreError(f"answer is not JSON: {clean_text(text[:_SNIPPET], _SNIPPET)!r}") from None
    if not isinstance(answer, dict):
        raise StoreError("answer is not a JSON object")
    success = _field(answer, "success")
    value = _field(answer, "value")
    error = _field(answer, "error")
    if success is not None and not isinstance(success, bool):
        raise StoreError("answer field success is not a boolean")
    for field, content in (("value", value), ("error", error)):
        if content is not None and not isinstance(content, str):
            raise StoreError(f"answer field {field} is not a string")
    return bool(success), value or "", error or ""


class ExecStore(ProgramStore):
    """A store backed by a program speaking the exec protocol (``type: exec``)."""

    kind = "exec"

    async def _call(self, op: str, request: dict[str, str]) -> str:
        line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        result = await self._run(op, line)
        log.debug("plugin=%s op=%s key=%s rc=%d", self.name, op, request["key"], result.returncode)
        if result.returncode != 0:
            detail = result.failure()
            try:
                _, _, error = parse_answer(result.stdout)
            except StoreError:
                error = ""
            if error:
                detail = f"{detail} (plugin error: {clean_text(error)})"
            raise self._error(op, detail)
        try:
            success, value, error = parse_answer(result.stdout)
        except StoreError as exc:
            stderr = f"; stderr: {result.stderr}" if result.stderr else ""
            raise self._error(op, f"{exc}{stderr}") from None
        if not success:
            reason = clean_text(error) or result.stderr or "success is false"
            raise self._error(op, reason)
        if result.stderr:
            log.debug("plugin=%s op=%s stderr=%s", self.name, op, result.stderr)
        return value

    async def get(self, key: str) -> str | None:
        """The value under ``key``; None when the plugin succeeds with no or an empty value."""
        check_key(key)
        value = (await self._call("get", {"action": "get", "key": key})).strip()
        return value or None

    async def set(self, key: str, value: str) -> None:
        check_key(key)
        check_value(value)
        await self._call("set", {"action": "set", "key": key, "value": value})
