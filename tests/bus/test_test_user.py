"""The test caller's accounts never outlive the runs that use them, even a killed one.

Each test uses its own random account names, so runs of the real suite (and other people's
runs on the same machine) are never touched.
"""

from __future__ import annotations

import grp
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.bus.sysbus import CREATED_DIR, HOLDERS_DIR, REPO, TestAccounts
from tests.prereq import require_root, require_tools

pytestmark = pytest.mark.root

HOLD = """
import os, signal, sys
from tests.bus.sysbus import TestAccounts
user = TestAccounts(sys.argv[1], sys.argv[2])
user.ensure()
print("ready", flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # a run killed by a timeout: no clean-up runs
sys.stdin.read()  # hold the accounts until the test closes our stdin
user.remove()
"""


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    require_root()
    require_tools("useradd", "userdel", "groupadd", "groupdel")
    tag = secrets.token_hex(3)
    user, group = f"smt-{tag}", f"smg-{tag}"
    yield user, group
    subprocess.run(["userdel", user], check=False, capture_output=True)
    subprocess.run(["groupdel", group], check=False, capture_output=True)
    (CREATED_DIR / f"{user}.created").unlink(missing_ok=True)
    shutil.rmtree(HOLDERS_DIR / user, ignore_errors=True)
    (HOLDERS_DIR / f"{user}.lock").unlink(missing_ok=True)


def holder(user: str, group: str, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, user, group, mode],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if mode != "kill":
        assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_runs_accounts_are_removed_by_the_next_run(names: tuple[str, str]) -> None:
    user, group = names
    killed = holder(user, group, "kill")
    assert killed.wait(30) == -9
    assert user_exists(user) and group_exists(group)  # what a killed run leaves
    TestAccounts(user, group).reap_stale()  # what the next session does first
    assert not user_exists(user) and not group_exists(group)
    assert not (CREATED_DIR / f"{user}.created").exists()


def test_a_killed_runs_accounts_are_recreated_cleanly_by_ensure(names: tuple[str, str]) -> None:
    user, group = names
    assert holder(user, group, "kill").wait(30) == -9
    mine = TestAccounts(user, group)
    mine.ensure()
    try:
        assert user_exists(user) and group_exists(group)
        assert group in [g.gr_name for g in grp.getgrall() if user in g.gr_mem]
    finally:
        mine.remove()
    assert not user_exists(user) and not group_exists(group)


def test_accounts_a_live_run_holds_are_left_until_the_last_run_ends(
    names: tuple[str, str],
) -> None:
    user, group = names
    other = holder(user, group, "hold")
    try:
        TestAccounts(user, group).reap_stale()
        assert user_exists(user) and group_exists(group)
        mine = TestAccounts(user, group)
        mine.ensure()
        mine.remove()  # we leave first: the other run still uses them
        assert user_exists(user) and group_exists(group)
    finally:
        assert other.stdin is not None
        other.stdin.close()
        assert other.wait(30) == 0
    assert not user_exists(user) and not group_exists(group)  # the last one out removed them


def test_a_group_no_run_created_is_used_and_left_alone(names: tuple[str, str]) -> None:
    user, group = names
    subprocess.run(["groupadd", "--system", group], check=True)  # an administrator's
    mine = TestAccounts(user, group)
    mine.ensure()
    mine.remove()
    assert not user_exists(user)
    assert group_exists(group)
