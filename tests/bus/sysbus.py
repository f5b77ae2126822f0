"""The unprivileged test caller; the private bus itself lives in ``stunmeshd.lab.sysbus``."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import os
import pwd
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stunmeshd.lab.sysbus import PYTHON, REPO, PrivateBus

__all__ = ["PYTHON", "REPO", "PrivateBus", "TestAccounts", "TestUser"]

# ---- the unprivileged caller -------------------------------------------------------------

TEST_USER = "stunmesh-test"
TEST_GROUP = "stunmesh"  # the group the shipped example rules file lets refresh
# What test runs created: it survives a reboot, as the accounts in /etc/passwd do.
CREATED_DIR = Path("/var/lib/stunmeshd-tests")
# Which live runs use the accounts now: gone after a reboot, as the runs are.
HOLDERS_DIR = Path("/run/stunmeshd-tests")


class TestAccounts:
    """The test user and its group, shared by concurrent test runs, never leaked.

    Every account a run creates is written down (before it is created) in ``CREATED_DIR``; every
    run using the accounts holds a file in ``HOLDERS_DIR`` naming its pid and start time. The
    last live run out removes what runs created, and any run (``ensure``, or ``reap_stale`` at
    session start) removes them when no live run holds them: a killed run's accounts go with the
    next run. Accounts no run created (an administrator's ``stunmesh`` group, say) are used
    and left alone.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = TEST_USER, group: str = TEST_GROUP) -> None:
        self.name = name
        self.group = group
        self._created = CREATED_DIR / f"{name}.created"
        self._holders = HOLDERS_DIR / name
        self._holder: Path | None = None

    # -- bookkeeping (always under the lock)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        HOLDERS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(HOLDERS_DIR / f"{self.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _live_holders(self) -> list[Path]:
        """Holder files of runs still alive; those of dead runs are deleted."""
        live = []
        for holder in self._holders.glob("*") if self._holders.exists() else ():
            pid, _, started = holder.name.partition("-")
            if pid.isdigit() and _start_time(int(pid)) == started:
                live.append(holder)
            else:
                holder.unlink(missing_ok=True)
        return live

    def _created_kinds(self) -> set[str]:
        try:
            return set(self._created.read_text().split())
        except FileNotFoundError:
            return set()

    def _note_created(self, kind: str) -> None:
        CREATED_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._created.write_text("\n".join(sorted(self._created_kinds() | {kind})) + "\n")

    def _remove_created(self) -> None:
        """Delete the accounts runs created; what cannot be deleted yet stays on the list."""
        kinds = self._created_kinds()
        if "user" in kinds and _exists(pwd.getpwnam, self.name):
            subprocess.run(["userdel", self.name], check=False, capture_output=True)
        if "group" in kinds and _exists(grp.getgrnam, self.group):
            subprocess.run(["groupdel", self.group], check=False, capture_output=True)
        left = {k for k in kinds if k == "user" and _exists(pwd.getpwnam, self.name)}
        left |= {k for k in kinds if k == "group" and _exists(grp.getgrnam, self.group)}
        if left:
            self._created.write_text("\n".join(sorted(left)) + "\n")
        else:
            self._created.unlink(missing_ok=True)

    # -- the public side

    def reap_stale(self) -> None:
        """Remove accounts a killed run left behind (no live run holds them)."""
        with self._locked():
            if not self._live_holders():
                self._remove_created()

    def ensure(self) -> None:
        with self._locked():
            if not self._live_holders():
                self._remove_created()  # a killed run's: start from scratch
            if not _exists(grp.getgrnam, self.group):
                self._note_created("group")
                subprocess.run(["groupadd", "--system", self.group], check=True)
            if not _exists(pwd.getpwnam, self.name):
                self._note_created("user")
                subprocess.run(
                    [
                        "useradd",
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        "--comment",
                        "stunmeshd test caller",
                        "--user-group",
                        "--groups",
                        self.group,
                        self.name,
                    ],
                    check=True,
                )
            if self.name not in grp.getgrnam(self.group).gr_mem:  # made by someone else
                subprocess.run(
                    ["usermod", "--append", "--groups", self.group, self.name], check=True
                )
            self._holders.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._holder = self._holders / f"{os.getpid()}-{_start_time(os.getpid())}"
            self._holder.touch()

    def remove(self) -> None:
        """Let go; the last live run removes the accounts runs created."""
        with self._locked():
            if self._holder is not None:
                self._holder.unlink(missing_ok=True)
                self._holder = None
            if not self._live_holders():
                self._remove_created()


class TestUser:
    """A system user in group ``stunmesh`` (``TestAccounts``: made and removed safely).

    It runs Python programs with ``python``, the interpreter of an installed copy of
    stunmeshd (tests/installed.py), never the checkout's: the checkout may be readable by root
    only.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, python: Path, name: str = TEST_USER, group: str = TEST_GROUP) -> None:
        self.python = python
        self.name = name
        self.group = group
        self.accounts = TestAccounts(name, group)

    def ensure(self) -> TestUser:
        self.accounts.ensure()
        return self

    def remove(self) -> None:
        self.accounts.remove()

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.name).pw_gid

    def argv(self, *argv: str) -> list[str]:
        if argv and argv[0] in (str(PYTHON), sys.executable):  # the checkout's interpreter
            argv = (str(self.python), *argv[1:])
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--",
            *argv,
        ]

    async def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user; returns exit code and output (never raises on failure)."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*argv),
            cwd="/",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


def _exists(lookup: Callable[[str], Any], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks ("" when it is gone): a pid alone is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22 of stat(5), after "pid (comm)"
