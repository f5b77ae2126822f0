"""Tests that wait on real time: a working stunmesh-go plugin that answers after 15 s.

They need nothing but a shell, yet each takes as long as the behaviour it shows, so they live
outside the unit tier (which stays well under 30 s).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.unit.test_plugin_timeouts import ANSWER_AFTER, KEY, VALUE, load, script


async def test_a_plugin_answering_after_15_s_is_not_cut_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slow_exec = script(
        tmp_path,
        "slow-exec.sh",
        f"""\
        cat >/dev/null
        sleep {ANSWER_AFTER}
        printf '{{"success":true,"value":"{VALUE}"}}\\n'
        """,
    )
    slow_shell = script(
        tmp_path,
        "slow-shell.sh",
        f"""\
        cat >/dev/null
        sleep {ANSWER_AFTER}
        echo {VALUE}
        """,
    )
    stores = load(
        tmp_path,
        f"""\
        slow_exec: {{type: exec, command: "{slow_exec}"}}
        slow_shell: {{type: shell, command: "{slow_shell}"}}
        """,
    )
    caplog.set_level(logging.INFO, logger="stunmeshd.stores.process")
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = await asyncio.gather(*(store.get(KEY) for store, _ in stores.values()))  # type: ignore[attr-defined]
    assert got == [VALUE, VALUE]
    assert loop.time() - started >= ANSWER_AFTER  # it really was that slow
    # slow, so said: once per plugin while running, and how long it took
    slow = [r.getMessage() for r in caplog.records if "is slow" in r.getMessage()]
    assert len(slow) == 2 and all("killed after 120 s" in m for m in slow)
    assert any("took 15." in r.getMessage() for r in caplog.records)
