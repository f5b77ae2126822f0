"""An installed copy of stunmeshd, made by ``packaging/install.sh`` once per test session.

It is staged the way packagers do (``DESTDIR=…/stage PREFIX=…/usr``), offline from the
wheelhouse (inside a network namespace with no network when run as root), with a ``python3``
that refuses to run first on ``PATH``; then the staged tree is copied to its real ``PREFIX``.
The packaging tests check it, and the tests that drop to an unprivileged user run it instead
of the checkout: a checkout may sit where only root can read (a mode-0700 home directory),
and the installed runtime is world-readable, as installed software is.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / "build" / "wheelhouse"
TABLE = REPO / "packaging" / "files"  # the system files install.sh installs
# a python3 first on PATH that must never be used: the runtime is Debian's /usr/bin/python3
HOSTILE_PYTHON = "#!/bin/sh\necho 'the python3 on PATH was used' >&2\nexit 97\n"


@dataclass
class Installed:
    top: Path  # world-readable scratch directory holding everything below
    stage: Path  # DESTDIR
    prefix: Path  # PREFIX: the staged tree copied here, where it runs
    offline: bool  # installed inside a network namespace with no network
    log: str  # what install.sh printed

    @property
    def runtime(self) -> Path:
        return self.prefix / "lib" / "stunmeshd"

    @property
    def python(self) -> Path:
        return self.runtime / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.prefix / "bin" / name

    def remove(self) -> None:
        shutil.rmtree(self.top, ignore_errors=True)


def fill_wheelhouse() -> subprocess.CompletedProcess[str]:
    """Download the pinned wheels once (needs PyPI the first time, like ``make venv``)."""
    return subprocess.run(
        [str(REPO / "packaging" / "wheelhouse.sh"), str(WHEELHOUSE)],
        capture_output=True,
        text=True,
        check=False,
    )


def offline(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` in a new network namespace (only loopback, down) when we may make one."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        return ["unshare", "--net", "--", *argv], True
    return argv, False


def install() -> Installed:
    top = Path(tempfile.mkdtemp(prefix="stunmeshd-installed-"))
    top.chmod(0o755)  # the unprivileged test user runs what is inside
    fake_bin = top / "path"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text(HOSTILE_PYTHON)
    (fake_bin / "python3").chmod(0o755)
    stage, prefix = top / "stage", top / "usr"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DESTDIR": str(stage),
        "PREFIX": str(prefix),
        "WHEELHOUSE": str(WHEELHOUSE),
    }
    argv, is_offline = offline([str(REPO / "packaging" / "install.sh")])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    installed = Installed(top, stage, prefix, is_offline, done.stdout + done.stderr)
    if done.returncode != 0:
        installed.remove()
        raise RuntimeError(f"packaging/install.sh failed:\n{installed.log}")
    # "make it real": what was staged under DESTDIR goes to PREFIX, as a package manager does
    subprocess.run(["cp", "-a", f"{stage}{prefix}", str(prefix)], check=True)
    return installed


def world_readable(path: Path) -> bool:
    """Every directory from / down to ``path`` can be entered by anyone, and it can be read."""
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def table(prefix: Path) -> list[tuple[Path, Path, int, str]]:
    """packaging/files as (source, installed path, mode, how) for PREFIX ``prefix``."""
    words = {
        "@prefix@": str(prefix),
        "@bindir@": f"{prefix}/bin",
        "@runtimedir@": f"{prefix}/lib/stunmeshd",
        "@datadir@": f"{prefix}/share",
        "@docdir@": f"{prefix}/share/doc/stunmeshd",
        "@unitdir@": f"{prefix}/lib/systemd/system",
        "@sysconfdir@": "/etc" if str(prefix) == "/usr" else f"{prefix}/etc",
    }
    rows = []
    for line in TABLE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pattern, directory, mode, how = line.split()
        for word, value in words.items():
            directory = directory.replace(word, value)
        sources = sorted(glob.glob(str(REPO / pattern)))
        assert sources, pattern
        for source in sources:
            path = Path(source)
            rows.append((path, Path(directory) / path.name, int(mode, 8), how))
    return rows
