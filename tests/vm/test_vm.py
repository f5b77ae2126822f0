"""The VM tier: the installed package under systemd (PID 1) and kernel WireGuard.

One VM boot (stunmeshd.lab.vm) runs every ``guest_*.py`` test inside the VM with pytest; each
guest test is reported here as its own test, failing with the guest's output. Needs root,
qemu-system-x86, linux-image-amd64, busybox-static and dist/stunmeshd_*.deb (``make test-vm``
builds it): missing, the tier skips locally and fails under CI.
"""

from __future__ import annotations

import ast
import asyncio
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stunmeshd.lab.vm import Vm, prerequisites
from tests.prereq import require

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUEST_MODULES = ("guest_service.py", "guest_lab.py")
# the whole guest run, boot to power-off: a safety net (6-8 min measured), with room for a
# machine shared with other work
VM_TIMEOUT = 900.0


def guest_tests() -> list[str]:
    """``module::test`` for every test function in the guest modules, in file order."""
    ids = []
    for module in GUEST_MODULES:
        tree = ast.parse((HERE / module).read_text())
        ids += [
            f"{module}::{node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        ]
    return ids


def guest_script() -> str:
    modules = " ".join(f"tests/vm/{m}" for m in GUEST_MODULES)
    return (
        f"cd {REPO}\n"
        f"CI=true {sys.executable} -m pytest -p no:cacheprovider -q -rA --durations=0 "
        "-o junit_logging=system-out "
        f"--junitxml=/vmshare/out/junit.xml {modules}\n"
    )


def parse_junit(xml: bytes) -> dict[str, str | None]:
    """``module::test`` -> None when it passed, else the failure text."""
    results: dict[str, str | None] = {}
    for case in ET.fromstring(xml).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1] + ".py"
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        out = case.findtext("system-out") or ""
        text = (
            None
            if problem is None
            else f"{problem.tag}: {problem.get('message')}\n{problem.text}\n{out[-6000:]}"
        )
        results[f"{module}::{case.get('name')}"] = text
    return results


@pytest.fixture(scope="module")
def guest_results() -> tuple[dict[str, str | None], str]:
    require(not prerequisites(), f"VM prerequisites: {', '.join(prerequisites())}")
    debs = sorted((REPO / "dist").glob("stunmeshd_*.deb"))
    require(bool(debs), "no dist/stunmeshd_*.deb (make test-vm builds it with make deb)")
    with Vm(keep=[REPO]) as vm:
        run = asyncio.run(vm.run(guest_script(), timeout=VM_TIMEOUT))
    print(f"VM: systemd ran the tests {run.boot_s:.1f}s after boot; whole run {run.wall_s:.0f}s")
    print(run.output[-3000:])
    junit = run.files.get("junit.xml")
    assert junit, f"the guest's pytest wrote no report (exit {run.status}):\n{run.output}"
    return parse_junit(junit), run.output


@pytest.mark.parametrize("guest_test", guest_tests())
def test_in_vm(guest_results: tuple[dict[str, str | None], str], guest_test: str) -> None:
    results, output = guest_results
    assert guest_test in results, f"{guest_test} did not run in the VM:\n{output[-4000:]}"
    problem = results[guest_test]
    assert problem is None, f"{guest_test} in the VM:\n{problem}"
