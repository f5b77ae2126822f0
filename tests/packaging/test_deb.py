"""``make deb``: dist/stunmeshd_VERSION_ARCH.deb, its control data, contents, maintainer
scripts and lintian; then ``apt-get install`` and ``apt-get purge`` of it for real, in a
throwaway root (this machine's / under a tmpfs overlay in a private mount namespace), so the
host's /usr is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.installed import REPO, WHEELHOUSE, fill_wheelhouse, offline, table
from tests.prereq import require, require_root, require_tools

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OVERRIDES = REPO / "packaging" / "deb" / "lintian-overrides"


def run(*argv: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def deb() -> Path:
    """``make deb``, offline from the wheelhouse, once per session."""
    require_tools("dpkg-deb", "dpkg-shlibdeps", "strip")
    wheels = fill_wheelhouse()
    require(wheels.returncode == 0, f"cannot fill the wheelhouse from PyPI: {wheels.stderr[-500:]}")
    argv, _ = offline(["make", "-C", str(REPO), "deb", f"WHEELHOUSE={WHEELHOUSE}"])
    built = run(*argv)
    assert built.returncode == 0, built.stdout + built.stderr
    arch = run("dpkg", "--print-architecture", check=True).stdout.strip()
    path = REPO / "dist" / f"stunmeshd_{VERSION}_{arch}.deb"
    assert str(path) in built.stdout.splitlines()  # make deb names what it built
    return path


def field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "--field", deb, name, check=True).stdout.strip()


def contents(deb: Path) -> dict[str, str]:
    """Path (without the leading .) -> the ``dpkg-deb -c`` line."""
    listing = run("dpkg-deb", "--contents", deb, check=True).stdout.splitlines()
    return {line.split()[5].removeprefix("."): line for line in listing}


def etc_files() -> set[str]:
    return {str(dest) for _, dest, _, _ in table(Path("/usr")) if str(dest).startswith("/etc/")}


# ---- the package itself ----------------------------------------------------------------------


def test_control_names_debian_dependencies_and_nothing_python(deb: Path) -> None:
    assert field(deb, "Package") == "stunmeshd"
    assert field(deb, "Version") == VERSION
    assert field(deb, "Architecture") == run("dpkg", "--print-architecture").stdout.strip()
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    for needed in ("dbus", "polkitd", "wireguard-tools", "python3 (>= 3.11~)", "python3 (<< 3.12)"):
        assert needed in depends
    assert not [d for d in depends if d.startswith("python3-")]  # the libraries are inside
    assert any(d.startswith("libc6 (>= ") for d in depends)  # from dpkg-shlibdeps
    assert int(field(deb, "Installed-Size")) > 0


def test_contents_are_make_install_at_usr_without_byte_code(deb: Path) -> None:
    files = contents(deb)
    for path in (
        "/usr/lib/systemd/system/stunmeshd.service",
        "/usr/share/dbus-1/system.d/io.github.stunmeshd.StunMesh1.conf",
        "/usr/share/dbus-1/system-services/io.github.stunmeshd.StunMesh1.service",
        "/usr/share/dbus-1/interfaces/io.github.stunmeshd.StunMesh1.xml",
        "/usr/share/polkit-1/actions/io.github.stunmeshd.StunMesh1.policy",
        "/usr/share/doc/stunmeshd/copyright",
        "/usr/share/doc/stunmeshd/changelog.gz",
        "/usr/lib/stunmeshd/pyvenv.cfg",
    ):
        assert path in files, path
    assert "-> ../lib/stunmeshd/bin/stunmeshd" in files["/usr/bin/stunmeshd"]
    assert "-> ../lib/stunmeshd/bin/stunmeshctl" in files["/usr/bin/stunmeshctl"]
    outside = {p for p in files if not p.startswith("/usr/") and not p.endswith("/")}
    assert outside == etc_files()  # only what packaging/files puts in /etc: none so far
    assert not [p for p in files if p.endswith(".pyc") or "__pycache__" in p]
    assert "/usr/lib/stunmeshd/installed-files" not in files  # dpkg keeps the list
    assert all(" root/root " in line for line in files.values())
    with tempfile.TemporaryDirectory() as tmp:
        run("dpkg-deb", "-x", deb, tmp, check=True)
        text = (Path(tmp) / "usr/lib/systemd/system/stunmeshd.service").read_text()
        assert "\nExecStart=/usr/bin/stunmeshd\n" in text
        shebang = (Path(tmp) / "usr/lib/stunmeshd/bin/stunmeshd").read_text().splitlines()[0]
        assert shebang == "#!/usr/lib/stunmeshd/bin/python"


def test_maintainer_scripts_are_there_and_parse(deb: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run("dpkg-deb", "--control", deb, tmp, check=True)
        for name in ("postinst", "prerm", "postrm"):
            script = Path(tmp) / name
            assert script.stat().st_mode & 0o777 == 0o755
            assert run("sh", "-n", script).returncode == 0
        conffiles = Path(tmp) / "conffiles"  # the config is the admin's, not a conffile
        listed = set(conffiles.read_text().split()) if conffiles.exists() else set()
        assert listed == etc_files()
        postinst = (Path(tmp) / "postinst").read_text()
        assert "daemon-reload" in postinst and "ReloadConfig" in postinst
        assert not re.search(r"\b(enable|start)\b", postinst.split("set -e", 1)[1])


def test_lintian_passes_and_every_override_is_explained_and_used(deb: Path) -> None:
    require_tools("lintian")
    result = run("lintian", "--info", "--fail-on", "error,warning", deb)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unused-override" not in result.stdout and "mismatched-override" not in result.stdout
    previous = ""  # a block of overrides starts right below its comment
    for line in OVERRIDES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert previous.strip(), f"override without a comment above it: {line}"
        previous = line


# ---- apt-get install / purge in a throwaway root --------------------------------------------


class ThrowawayRoot:
    """This machine's / under a tmpfs overlay, seen only inside a private mount namespace:
    whatever is installed there vanishes with the namespace. /run is a fresh tmpfs (no host
    systemd or bus to talk to) and a policy-rc.d forbids starting services."""

    def __init__(self) -> None:
        self.top = Path(tempfile.mkdtemp(prefix="stunmeshd-root-"))
        self.root = self.top / "root"
        self.holder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ThrowawayRoot:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "3600"]
        )
        ours = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == ours:
            assert time.monotonic() < deadline, "unshare did not start"
            time.sleep(0.02)
        top, root = self.top, self.root
        self.host(
            f"mount -t tmpfs tmpfs {top} && mkdir {top}/upper {top}/work {root} && "
            f"mount -t overlay overlay {root} "
            f"-o lowerdir=/,upperdir={top}/upper,workdir={top}/work && "
            f"mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc && "
            f"mount -t tmpfs tmpfs {root}/run && mount -t tmpfs tmpfs {root}/tmp && "
            f"printf '#!/bin/sh\\nexit 101\\n' > {root}/usr/sbin/policy-rc.d && "
            f"chmod 755 {root}/usr/sbin/policy-rc.d"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
        shutil.rmtree(self.top, ignore_errors=True)

    def host(self, script: str) -> subprocess.CompletedProcess[str]:
        """``script`` in the namespace, outside the root."""
        assert self.holder is not None
        done = run("nsenter", "-t", str(self.holder.pid), "-m", "sh", "-c", script)
        assert done.returncode == 0, done.stderr
        return done

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        """``script`` chrooted into the throwaway root (never raises)."""
        assert self.holder is not None
        env = "env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin"
        return run(
            "nsenter",
            "-t",
            str(self.holder.pid),
            "-m",
            "chroot",
            str(self.root),
            *env.split(),
            "sh",
            "-c",
            script,
        )

    def leftovers(self) -> list[str]:
        """Files the overlay gained, and directories that are not on the host, apart from
        dpkg's and apt's own records and our policy-rc.d."""
        bookkeeping = (
            "/var/lib/dpkg",
            "/var/lib/apt",
            "/var/cache",
            "/var/log",
            "/usr/sbin/policy-rc.d",
        )
        listing = self.host(f"cd {self.top}/upper && find . -mindepth 1 -printf '%y %P\\n'")
        left = []
        for line in sorted(listing.stdout.splitlines()):
            kind, rel = line.split(" ", 1)
            path = "/" + rel
            if path.startswith(bookkeeping):
                continue
            if kind != "d" or not os.path.isdir(path):
                left.append(path)
        return sorted(left)


@pytest.fixture
def throwaway_root() -> Iterator[ThrowawayRoot]:
    require_root()
    require_tools("unshare", "nsenter", "chroot", "apt-get")
    with ThrowawayRoot() as root:
        yield root


@pytest.mark.root
def test_apt_installs_nothing_enabled_and_purge_leaves_nothing(
    deb: Path, throwaway_root: ThrowawayRoot
) -> None:
    root = throwaway_root
    root.host(f"cp {deb} {root.root}/tmp/stunmeshd.deb")
    installed = root.sh("apt-get install -y --no-install-recommends /tmp/stunmeshd.deb")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert root.sh("systemctl is-enabled stunmeshd.service").stdout.strip() == "disabled"
    config = "/usr/share/doc/stunmeshd/examples/config.yaml"
    checked = root.sh(f"cd / && stunmeshd --check -c {config} && stunmeshctl --help")
    assert checked.returncode == 0, checked.stderr
    assert "usage: stunmeshctl" in checked.stdout
    compiled = root.sh("find /usr/lib/stunmeshd -name '*.pyc' | wc -l")
    assert int(compiled.stdout) > 100  # postinst byte-compiled the runtime

    purged = root.sh("apt-get purge -y stunmeshd")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    root.host(f"rm -f {root.root}/tmp/stunmeshd.deb")
    assert root.leftovers() == []


@pytest.mark.root
def test_purge_drops_the_admins_enablement_and_keeps_their_config(
    deb: Path, throwaway_root: ThrowawayRoot
) -> None:
    root = throwaway_root
    root.host(f"cp {deb} {root.root}/tmp/stunmeshd.deb")
    assert root.sh("apt-get install -y --no-install-recommends /tmp/stunmeshd.deb").returncode == 0
    enabled = root.sh("systemctl enable stunmeshd.service && systemctl is-enabled stunmeshd")
    assert enabled.stdout.strip().endswith("enabled"), enabled.stderr
    alias = "/etc/systemd/system/dbus-io.github.stunmeshd.StunMesh1.service"
    assert root.sh(f"test -L {alias}").returncode == 0  # what D-Bus activation starts
    root.sh("mkdir -m 700 /etc/stunmeshd && echo 'interfaces: {}' > /etc/stunmeshd/config.yaml")

    assert root.sh("apt-get remove -y stunmeshd").returncode == 0
    assert root.sh("test -f /etc/stunmeshd/config.yaml").returncode == 0
    purged = root.sh("apt-get purge -y stunmeshd")
    assert purged.returncode == 0
    assert "your configuration is kept" in purged.stdout + purged.stderr
    root.host(f"rm -f {root.root}/tmp/stunmeshd.deb")
    assert root.leftovers() == ["/etc/stunmeshd", "/etc/stunmeshd/config.yaml"]
