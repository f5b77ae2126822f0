"""``stunmeshd --check`` and the command line, run as an admin would run them.

The real program runs in a subprocess (``python -m stunmeshd``) so exit codes and stderr are
what a shell sees. The normal start path is only driven with bad configurations (they stop
before the service) or in-process with the service module replaced, so no test starts a daemon.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from stunmeshd import __version__
from stunmeshd.config import Config
from stunmeshd.daemon import build_parser, main
from tests.installed import Installed

REPO = Path(__file__).resolve().parents[2]
PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
SECRET = "S3CR3T-T0KEN-do-not-print"

GOOD = f"""\
stun:
  addresses: ["198.51.100.1:3478"]
interfaces:
  wg0:
    peers:
      b:
        public_key: "{PUB_B}"
        plugin: prog
plugins:
  prog:
    type: exec
    command: /bin/true
"""


def stunmeshd(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "stunmeshd", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def installed_stunmeshd(
    installed: Installed, user: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """The installed ``stunmeshd`` as ``user``: it may not be able to read the checkout."""
    command = [str(installed.bin("stunmeshd")), *args]
    command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=60, check=False)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stunmeshd: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


# --- --check ---------------------------------------------------------------------------------


def test_check_good_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == (
        f"stunmeshd: configuration OK: {path} (1 interface, 1 peer, 1 plugin)"
    )


def test_check_prints_warnings_and_still_passes(tmp_path: Path) -> None:
    text = GOOD.replace("    peers:", "    listen_interfaces: [eth0]\n    peers:") + "colour: red\n"
    path = write(tmp_path, text)
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    warnings = sorted(result.stderr.splitlines())
    assert warnings == [
        f"stunmeshd: warning: {path}:14: colour: unknown key, ignored",
        f"stunmeshd: warning: {path}:5: interfaces.wg0.listen_interfaces: accepted for "
        "stunmesh-go compatibility but does nothing on Linux: the raw socket sees STUN answers "
        "on every interface",
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (GOOD + "refresh_interval: 600\n", [":13: refresh_interval: ", '"600s"']),
        (GOOD + "log: [\n", [":14: ", "YAML syntax error"]),
        ("", [": the file is empty"]),
        (GOOD.replace("type: exec", "type: builtin\n    name: nosuchstore"), ["plugins.prog.name"]),
    ],
    ids=["bare-number", "yaml-syntax", "empty", "unknown-builtin"],
)
def test_check_bad_config_exits_2_with_one_line(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    path = write(tmp_path, text)
    assert_one_error_line(stunmeshd("--check", "-c", str(path)), str(path), *words)


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert_one_error_line(stunmeshd("--check", "-c", str(path)), f"{path}: no such file")


def test_check_directory_given_as_file(tmp_path: Path) -> None:
    assert_one_error_line(stunmeshd("--check", "-c", str(tmp_path)), "is a directory")


def test_check_never_prints_store_secrets(tmp_path: Path) -> None:
    text = GOOD.replace("plugin: prog", "plugin: cf") + (
        f'  cf:\n    type: builtin\n    name: cloudflare\n    token: "{SECRET}\n'
    )
    result = stunmeshd("--check", "-c", str(write(tmp_path, text)))
    assert_one_error_line(result, "YAML syntax error")
    assert SECRET not in result.stderr


def test_check_validates_store_options(tmp_path: Path) -> None:
    """A builtin store refusing its options (here: Cloudflare without a token) fails --check
    with the file, the plugin's key and a line, through stunmeshd.stores.registry."""
    text = GOOD.replace("plugin: prog", "plugin: cf") + (
        "  cf:\n    type: builtin\n    name: cloudflare\n    zone: example.com\n"
    )
    path = write(tmp_path, text)
    line = assert_one_error_line(stunmeshd("--check", "-c", str(path)), str(path))
    assert f"{path}:13: plugins.cf" in line, line  # the cf entry's line


def test_check_config_dir(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "config.yml")
    result = stunmeshd("--check", "--config-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "config.yml") in result.stdout


def test_check_config_dir_without_config(tmp_path: Path) -> None:
    assert_one_error_line(
        stunmeshd("--check", "--config-dir", str(tmp_path)), str(tmp_path), "config.yaml"
    )


def test_check_example_config() -> None:
    result = stunmeshd("--check", "-c", "examples/config.yaml")
    assert result.returncode == 0, result.stderr
    assert "configuration OK: examples/config.yaml" in result.stdout


# --- the rest of the command line ------------------------------------------------------------


def test_bad_config_on_normal_start_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "refresh_interval: 600\n")
    assert_one_error_line(stunmeshd("-c", str(path)), str(path), "refresh_interval")


def test_version() -> None:
    result = stunmeshd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"stunmeshd {__version__}"


def test_config_and_config_dir_exclude_each_other(tmp_path: Path) -> None:
    result = stunmeshd("-c", "x.yaml", "--config-dir", str(tmp_path), "--check")
    assert result.returncode == 2
    assert "not allowed with" in result.stderr and "Traceback" not in result.stderr


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.config, args.config_dir, args.check, args.oneshot) == (None, None, False, False)
    assert (args.bus, args.log_level) == ("system", None)


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        (["-c", "/x/c.yaml"], "config", "/x/c.yaml"),
        (["--config", "c.yaml"], "config", "c.yaml"),
        (["--config-dir", "/etc/stunmesh"], "config_dir", "/etc/stunmesh"),
        (["--bus", "session"], "bus", "session"),
        (["--bus", "unix:path=/run/test/bus"], "bus", "unix:path=/run/test/bus"),
        (["--log-level", "WARN"], "log_level", "warning"),
        (["--oneshot"], "oneshot", True),
    ],
)
def test_parser_options(argv: list[str], attribute: str, value: Any) -> None:
    assert getattr(build_parser().parse_args(argv), attribute) == value


@pytest.mark.parametrize("argv", [["--bus", "my bus"], ["--log-level", "loud"], ["--nope"]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture
def fake_service(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Config, Any]]:
    """Stands in for stunmeshd.service so the hand-over can be seen without a daemon."""
    calls: list[tuple[Config, Any]] = []
    module = types.ModuleType("stunmeshd.service")

    def run(config: Config, args: Any) -> int:
        calls.append((config, args))
        return 0

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stunmeshd.service", module)
    return calls


def test_normal_start_hands_config_and_options_to_the_service(
    tmp_path: Path, fake_service: list[tuple[Config, Any]]
) -> None:
    path = write(tmp_path, GOOD)
    assert main(["-c", str(path), "--oneshot", "--log-level", "debug", "--bus", "session"]) == 0
    ((config, args),) = fake_service
    assert config.source == str(path) and "wg0" in config.interfaces
    assert config.log.level == "debug"  # --log-level overrides log.level
    assert (args.oneshot, args.bus) == (True, "session")
