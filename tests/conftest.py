"""Tests marked ``root`` need root and the test-bed programs.

Without them a developer's run skips those tests; under CI (``CI`` set) a missing
prerequisite is a failure, so CI can never go green by skipping the real-part tests.
"""

from __future__ import annotations

import pytest

from tests.prereq import require_root


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root"):
        require_root()
