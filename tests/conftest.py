"""Tests marked ``root`` need root and the test-bed programs.

Without them a developer's run skips those tests; under CI (``CI`` set) a missing
prerequisite is a failure, so CI can never go green by skipping the real-part tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.installed import Installed, fill_wheelhouse, install
from tests.prereq import require, require_root


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root"):
        require_root()


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    """stunmeshd installed by packaging/install.sh once per session (tests/installed.py)."""
    wheels = fill_wheelhouse()
    require(wheels.returncode == 0, f"cannot fill the wheelhouse from PyPI: {wheels.stderr[-500:]}")
    runtime = install()
    yield runtime
    runtime.remove()
