"""`stunmeshd --check` on a config its caller cannot read, run as `nobody` from an installed copy.

Root reads anything, so under root the check runs as uid 65534 from the world-readable
installed copy (the checkout may be readable by root only); building that copy takes seconds,
which is why this lives with the packaging tests rather than the unit tier.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prereq import require
from tests.unit.test_check_cli import (
    GOOD,
    assert_one_error_line,
    installed_stunmeshd,
    stunmeshd,
    write,
)


@pytest.fixture
def unreadable_config() -> Iterator[Path]:
    """A valid config nobody but root may read, in a directory anyone may enter."""
    directory = Path(tempfile.mkdtemp(prefix="stunmeshd-test-"))
    try:
        directory.chmod(0o755)
        path = write(directory, GOOD)
        path.chmod(0o000)
        yield path
    finally:
        shutil.rmtree(directory)


def test_check_unreadable_file(unreadable_config: Path, request: pytest.FixtureRequest) -> None:
    if os.geteuid() == 0:  # root reads anything: run the check as nobody
        require(shutil.which("setpriv") is not None, "setpriv (util-linux) to drop root")
        installed = request.getfixturevalue("installed")  # built only when it is needed
        result = installed_stunmeshd(installed, "65534", "--check", "-c", str(unreadable_config))
    else:
        result = stunmeshd("--check", "-c", str(unreadable_config))
    assert_one_error_line(result, str(unreadable_config), "permission denied")
