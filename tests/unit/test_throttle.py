"""logs.Throttle: a fault that repeats every cycle is said once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from stunmeshd.logs import Throttle


def test_once_per_interval_per_key_with_the_repeats_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttle = Throttle(60.0, clock=lambda: now[0])
    log = logging.getLogger("test.throttle")
    caplog.set_level(logging.WARNING, logger="test.throttle")
    said = [throttle.warning(log, "a", "store %s failed", "x") for _ in range(5)]
    assert said == [True, False, False, False, False]
    assert throttle.warning(log, "b", "another kind") is True  # keys are independent
    now[0] = 61.0
    assert throttle.warning(log, "a", "store %s failed", "x") is True
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "store x failed",
        "another kind",
        "store x failed (repeated 4 times since the last warning)",
    ]
