"""The unprivileged test caller; the private bus itself lives in ``stunmeshd.lab.sysbus``."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import pwd
import subprocess
import sys
from pathlib import Path

from stunmeshd.lab.sysbus import PYTHON, REPO, PrivateBus

__all__ = ["PYTHON", "REPO", "PrivateBus", "TestUser"]

# ---- the unprivileged caller -------------------------------------------------------------

TEST_USER = "stunmesh-test"
TEST_GROUP = "stunmesh"  # the group the shipped example rules file lets refresh


class TestUser:
    """A system user in group ``stunmesh``; made once, removed by ``remove`` if we made it.

    It runs Python programs with ``python``, the interpreter of an installed copy of
    stunmeshd (tests/installed.py), never the checkout's: the checkout may be readable by root
    only.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, python: Path, name: str = TEST_USER, group: str = TEST_GROUP) -> None:
        self.python = python
        self.name = name
        self.group = group
        self.created_user = False
        self.created_group = False

    def ensure(self) -> TestUser:
        try:
            grp.getgrnam(self.group)
        except KeyError:
            subprocess.run(["groupadd", "--system", self.group], check=True)
            self.created_group = True
        try:
            pwd.getpwnam(self.name)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    "--groups",
                    self.group,
                    self.name,
                ],
                check=True,
            )
            self.created_user = True
        if self.name not in grp.getgrnam(self.group).gr_mem:  # made by someone else, without it
            subprocess.run(["usermod", "--append", "--groups", self.group, self.name], check=True)
        return self

    def remove(self) -> None:
        if self.created_user:
            subprocess.run(["userdel", self.name], check=False)
        if self.created_group:
            subprocess.run(["groupdel", self.group], check=False)

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
