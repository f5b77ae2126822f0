"""``make install`` / ``packaging/install.sh``: a self-contained runtime at any PREFIX.

The session's installed copy (tests/installed.py) was staged under DESTDIR, offline, with a
``python3`` first on PATH that fails, then copied to its PREFIX; these tests check that copy,
run its commands there, and uninstall a copy of the staging tree.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.installed import REPO, WHEELHOUSE, Installed, offline, table, world_readable

LOCK = REPO / "packaging" / "requirements.lock"


def pins() -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in LOCK.read_text().splitlines())
    return dict(
        (name.lower().replace("_", "-"), version)
        for name, version in (line.split("==") for line in lines if line)
    )


def run(*argv: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )  # type: ignore[call-overload]


def tree(root: Path) -> set[str]:
    """Every path below ``root`` (directories with a trailing /), relative to it."""
    found = set()
    for path in root.rglob("*"):
        rel = "/" + str(path.relative_to(root))
        found.add(rel + "/" if path.is_dir() and not path.is_symlink() else rel)
    return found


def ancestors(path: Path, root: Path) -> set[str]:
    """The directories strictly between ``root`` and ``path``, named as ``tree`` names them."""
    parts = path.relative_to(root).parts
    return {"/" + "/".join(parts[:n]) + "/" for n in range(1, len(parts))}


# ---- how it was built ------------------------------------------------------------------------


@pytest.mark.root
def test_built_offline_from_debian_python_whatever_python3_is_on_path(installed: Installed) -> None:
    assert installed.offline  # install.sh ran in a network namespace without network
    assert "python3 on PATH was used" not in installed.log
    cfg = (installed.runtime / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in cfg
    assert installed.python.resolve() == Path("/usr/bin/python3").resolve()
    assert "include-system-site-packages = false" in cfg


def test_runtime_holds_exactly_the_pinned_libraries(installed: Installed) -> None:
    code = (
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)\n"
    )
    listed = run(installed.python, "-I", "-c", code, cwd="/")
    assert listed.returncode == 0, listed.stderr
    found = dict(
        (name.lower().replace("_", "-"), version)
        for name, version in (line.split() for line in listed.stdout.splitlines())
    )
    version = run(
        installed.python, "-I", "-c", "import stunmeshd; print(stunmeshd.__version__)"
    ).stdout.strip()
    assert found == {**pins(), "stunmeshd": version}  # no pip, no setuptools, nothing else


def test_the_lock_pins_exactly_what_stunmeshd_requires(installed: Installed) -> None:
    """The lock is the closure of pyproject's runtime dependencies, read from the installed
    wheels' metadata: a library the daemon dropped (pyroute2: wireguard/netlink.py encodes
    netlink itself) or one only the tests use cannot stay in the package unnoticed."""
    site = next((installed.runtime / "lib").glob("python3*/site-packages"))
    dists = {
        d.metadata["Name"].lower().replace("_", "-"): d
        for d in importlib.metadata.distributions(path=[str(site)])
    }
    needed: set[str] = set()
    todo = ["stunmeshd"]
    while todo:
        for line in dists[todo.pop()].requires or []:
            req = Requirement(line)
            name = req.name.lower().replace("_", "-")
            if (req.marker is None or req.marker.evaluate({"extra": ""})) and name not in needed:
                needed.add(name)
                todo.append(name)
    assert needed == set(pins())
    assert "pyroute2" not in needed and "h11" in needed


# ---- where everything is ---------------------------------------------------------------------


def test_system_files_are_where_bus_polkit_and_systemd_look(installed: Installed) -> None:
    prefix = installed.prefix
    for source, path, mode, how in table(prefix):
        assert path.is_file(), path
        assert path.stat().st_mode & 0o7777 == mode, path
        if how == "copy":
            assert path.read_bytes() == source.read_bytes(), path
        else:
            assert not re.search("@[a-z]+@", path.read_text()), path  # all placeholders replaced
    unit = (prefix / "lib" / "systemd" / "system" / "stunmeshd.service").read_text()
    assert f"\nExecStart={prefix}/bin/stunmeshd\n" in unit
    assert f"\nExecStartPre={prefix}/bin/stunmeshd --check\n" in unit
    assert (
        prefix / "share" / "dbus-1" / "system.d" / "io.github.stunmeshd.StunMesh1.conf"
    ).exists()
    activation = prefix / "share/dbus-1/system-services/io.github.stunmeshd.StunMesh1.service"
    assert "SystemdService=dbus-io.github.stunmeshd.StunMesh1.service" in activation.read_text()


def test_commands_are_links_into_the_runtime(installed: Installed) -> None:
    for name in ("stunmeshd", "stunmeshctl", "stunmesh-applet"):
        link = installed.bin(name)
        assert link.is_symlink()
        assert os.readlink(link) == f"../lib/stunmeshd/bin/{name}"  # relative: survives DESTDIR
        script = link.resolve()
        assert script.read_text().splitlines()[0] == f"#!{installed.runtime}/bin/python"
    assert sorted(p.name for p in (installed.runtime / "bin").iterdir()) == [
        "python",
        "python3",
        "python3.11",
        "stunmesh-applet",
        "stunmeshctl",
        "stunmeshd",
    ]
    assert world_readable(installed.bin("stunmeshd").resolve())


def test_no_file_names_the_staging_directory(installed: Installed) -> None:
    staging = str(installed.stage).encode()
    leaks = [
        str(path)
        for path in installed.prefix.rglob("*")
        if path.is_file() and not path.is_symlink() and staging in path.read_bytes()
    ]
    assert leaks == []


def test_manifest_lists_exactly_what_was_staged(installed: Installed) -> None:
    staged = installed.stage / str(installed.prefix).lstrip("/")
    manifest = (staged / "lib" / "stunmeshd" / "installed-files").read_text().splitlines()
    below = {path.removeprefix(str(installed.prefix)) for path in manifest}
    assert all(path.startswith(str(installed.prefix) + "/") for path in manifest)
    assert below == tree(staged)


# ---- it runs at its PREFIX -------------------------------------------------------------------


def test_installed_commands_run_from_their_prefix(installed: Installed, tmp_path: Path) -> None:
    env = {"PATH": f"{installed.top / 'path'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    config = shutil.copy(REPO / "examples" / "config.yaml", tmp_path / "config.yaml")
    good = run(installed.bin("stunmeshd"), "--check", "-c", config, env=env, cwd="/")
    assert good.returncode == 0, good.stderr
    assert "configuration OK" in good.stderr + good.stdout
    (tmp_path / "bad.yaml").write_text("interfaces: [\n")
    bad = run(installed.bin("stunmeshd"), "--check", "-c", tmp_path / "bad.yaml", env=env)
    assert bad.returncode == 2 and "bad.yaml" in bad.stderr
    usage = run(installed.bin("stunmeshctl"), "--help", env=env, cwd="/")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: stunmeshctl")
    where = run(installed.python, "-c", "import stunmeshd; print(stunmeshd.__file__)", cwd="/")
    assert where.stdout.startswith(str(installed.runtime) + "/")  # not the checkout


# ---- uninstall -------------------------------------------------------------------------------


def test_uninstall_removes_exactly_what_was_installed(installed: Installed, tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    subprocess.run(["cp", "-a", str(installed.stage), str(stage)], check=True)
    prefix = stage / str(installed.prefix).lstrip("/")
    foreign = prefix / "share" / "dbus-1" / "system.d" / "someone-else.conf"
    foreign.write_text("<busconfig/>\n")
    done = run("make", "-C", REPO, "uninstall", f"DESTDIR={stage}", f"PREFIX={installed.prefix}")
    assert done.returncode == 0, done.stderr
    # left: the directories down to PREFIX, and the foreign file with the directories above it
    expected = ancestors(prefix / "-", stage) | ancestors(foreign, stage)
    assert tree(stage) == expected | {"/" + str(foreign.relative_to(stage))}
    assert not (prefix / "lib" / "stunmeshd").exists()


@pytest.mark.root
def test_make_install_reinstall_and_uninstall_at_a_prefix_offline() -> None:
    top = Path(tempfile.mkdtemp(prefix="stunmeshd-direct-"))
    try:
        prefix = top / "opt"
        argv, is_offline = offline(
            ["make", "-C", str(REPO), "install", f"PREFIX={prefix}", f"WHEELHOUSE={WHEELHOUSE}"]
        )
        assert is_offline
        done = run(*argv)
        assert done.returncode == 0, done.stderr
        checked = run(
            prefix / "bin" / "stunmeshd", "--check", "-c", REPO / "examples" / "config.yaml"
        )
        assert checked.returncode == 0, checked.stderr
        # a file an older version installed (in the manifest) goes when the new one is installed
        old = prefix / "share" / "doc" / "stunmeshd" / "OLD-VERSION-ONLY"
        old.write_text("gone after the reinstall\n")
        with (prefix / "lib" / "stunmeshd" / "installed-files").open("a") as manifest:
            manifest.write(f"{old}\n")
        again = run(*argv)
        assert again.returncode == 0, again.stderr
        assert not old.exists()
        assert (prefix / "bin" / "stunmeshd").exists()
        removed = run("make", "-C", REPO, "uninstall", f"PREFIX={prefix}")
        assert removed.returncode == 0, removed.stderr
        assert list(prefix.iterdir()) == []  # PREFIX itself stays: it may well be /usr
    finally:
        shutil.rmtree(top)


def test_a_failed_install_takes_back_what_it_made(tmp_path: Path) -> None:
    (tmp_path / "no-wheels").mkdir()  # pip cannot find a thing: the install fails half-way
    stage, prefix = tmp_path / "stage", "/opt/stunmeshd"
    env = {**os.environ, "DESTDIR": str(stage), "PREFIX": prefix}
    env["WHEELHOUSE"] = str(tmp_path / "no-wheels")
    failed = run(REPO / "packaging" / "install.sh", env=env)
    assert failed.returncode != 0
    assert "install failed: removing what it installed" in failed.stderr
    assert tree(stage) == {"/opt/", "/opt/stunmeshd/"}  # the system files went again too
