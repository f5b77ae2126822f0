"""Bounded resources for any configuration input (issue 13, item 4).

Each hostile input fails with one line naming the file, the line and (where there is one) the
key, and exit 2 from ``--check`` — never an internal error, a hang, or gigabytes of memory.
The command-line cases run under an address-space and CPU limit, so a loader that expands or
loops is stopped and the test fails instead of taking the machine with it. How fast each case
fails is measured by ``make bench-config_limits``, not asserted here.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stunmeshd import safeyaml
from stunmeshd.config import MAX_CONFIG_BYTES, load_config, parse_config
from stunmeshd.errors import ConfigError
from tests.unit.test_check_cli import REPO, assert_one_error_line

PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
GOOD = f"""\
stun: {{addresses: ["198.51.100.1:3478"]}}
plugins:
  prog: {{type: exec, command: /bin/true}}
interfaces:
  wg0:
    peers:
      b: {{public_key: "{PUB_B}", plugin: prog}}
"""


def laughs(levels: int = 9, width: int = 9, merge: bool = True) -> str:
    """The ~500-byte "billion laughs": each level refers to the one below ``width`` times."""
    lines = ["a0: &a0 {x: 1, y: 2}" if merge else "a0: &a0 [x, y]"]
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} {{<<: [{refs}]}}" if merge else f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def check_bounded(path: Path) -> subprocess.CompletedProcess[str]:
    """``stunmeshd --check -c path`` with 1 GiB of address space and 30 s of CPU at most."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        resource.setrlimit(resource.RLIMIT_CPU, (30, 30))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "stunmeshd", "--check", "-c", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=limit,
    )


# (id, file text, words the one line must contain)
HOSTILE = [
    ("billion-laughs-merge", laughs(), [":6: a5", "expands to more than 100,000 values"]),
    (
        "billion-laughs-one-level-deeper",
        laughs(levels=10),
        [":6: a5", "expands to more than 100,000 values"],
    ),
    (
        "billion-laughs-in-plugin-option",
        GOOD.replace(
            "/bin/true}", "/bin/true, opt: {" + laughs(merge=False).replace("\n", ", ") + "}}"
        ),
        [":3: plugins.prog.opt.a5: ", "expands"],
    ),
    ("nesting-10000-flow", "[" * 10000, [":1: ", "nested deeper than 64 levels"]),
    ("nesting-10000-mapping", "{a: " * 10000, [":1: ", "nested deeper than 64 levels"]),
    (
        "nesting-block",
        "".join(" " * i + "a:\n" for i in range(200)),
        [":65: ", "nested deeper than 64 levels"],
    ),
    (
        "nesting-through-aliases",
        "".join(
            f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" if i else "a0: &a0 [1]\n"
            for i in range(20)
        ),
        ["nested deeper than 64 levels through aliases"],
    ),
    ("self-reference", "a: &a [*a]\n", [":1: a[0]: ", "refers to itself"]),
    ("self-merge", "a: &a {<<: *a}\n", [":1: ", "refers to itself"]),
    ("many-values", "k: [" + "1, " * 150_000 + "]\n", [":1: ", "more than 100,000 values"]),
    (
        "huge-int",
        GOOD + "ping_monitor: {fixed_retries: " + "9" * 5000 + "}\n",
        [":8: ping_monitor.fixed_retries: ", "out of range"],
    ),
    (
        "int-over-4300-digits-quoted",
        GOOD + 'ping_monitor: {fixed_retries: "' + "9" * 5000 + '"}\n',
        [":8: ping_monitor.fixed_retries: ", "whole number"],
    ),
    (
        "huge-int-in-option",
        GOOD.replace("/bin/true}", "/bin/true, port: " + "9" * 400 + "}"),
        [":3: plugins.prog.port: ", "out of range"],
    ),
    (
        "huge-int-timeout",
        GOOD.replace("/bin/true}", "/bin/true, timeout: " + "9" * 400 + "}"),
        [":3: plugins.prog.timeout: ", "out of range"],
    ),
    (
        "timeout-past-go-range",
        GOOD.replace("/bin/true}", "/bin/true, timeout: 1.0e+300}"),
        [":3: plugins.prog.timeout: ", "out of range"],
    ),
    (
        "sexagesimal-int",
        GOOD + "ping_monitor: {fixed_retries: " + "1:" * 400 + "0}\n",
        [":8: ping_monitor.fixed_retries: ", "out of range"],
    ),
    (
        "huge-stun-port",
        GOOD.replace("198.51.100.1:3478", "198.51.100.1:" + "9" * 5000),
        [":1: stun.addresses[0]: ", "port from 1 to 65535"],
    ),
    ("lone-surrogate-interface", 'interfaces: {"\\ud800": {}}\n', [":1: "]),
    ("lone-surrogate-value", GOOD + 'log: {level: "\\udfff"}\n', [":8: "]),
    ("nul-in-text", GOOD + 'log: {level: "in\\0fo"}\n', [":8: log.level: ", "NUL"]),
    ("bad-timestamp-option", GOOD.replace("/bin/true}", "/bin/true, t: 2001-13-45}"), [":3: "]),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_config_is_one_line_exit_2(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    line = assert_one_error_line(check_bounded(path), f"stunmeshd: {path}:")
    for word in words:
        assert word in line, line
    assert "internal error" not in line


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_config_raises_config_error_in_process(text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="hostile.yaml")
    assert info.value.line is not None
    assert str(info.value).splitlines() == [str(info.value)]


def test_pure_python_yaml_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the same limits hold (PyYAML's own parser reads the same events)."""
    import yaml

    monkeypatch.setattr(safeyaml, "_Loader", yaml.SafeLoader)
    for text, reason in [
        (laughs(), "expands"),
        ("[" * 10000, "nested deeper"),
        ('interfaces: {"\\ud800": {}}\n', "lone surrogate"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            parse_config(text, source="hostile.yaml")


def test_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO with no writer: reading it would wait forever."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert_one_error_line(check_bounded(fifo), f"stunmeshd: {fifo}: is a FIFO (named pipe)")


def test_fifo_through_config_dir_is_refused(tmp_path: Path) -> None:
    """In process: a loader that waited on the FIFO would be released by the writer below
    (and then find the file empty), so a regression fails this test instead of hanging it."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    done = threading.Event()

    def release_a_blocked_reader() -> None:
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody is reading
                continue

    writer = threading.Thread(target=release_a_blocked_reader, daemon=True)
    writer.start()
    try:
        with pytest.raises(ConfigError, match="is a FIFO"):
            load_config(config_dir=tmp_path)
    finally:
        done.set()
        writer.join()


def test_character_device_is_refused() -> None:
    """/dev/zero would be read up to the size limit and then refused; it is refused at once."""
    with pytest.raises(ConfigError, match="is a character device, not a regular file"):
        load_config(Path("/dev/zero"))


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + "#" * MAX_CONFIG_BYTES)
    assert_one_error_line(check_bounded(path), "is larger than 1024 KiB")


def test_a_real_large_file_still_loads(tmp_path: Path) -> None:
    """The limits leave room: 1,000 peers on one interface load, with anchors and merges."""
    import base64

    keys = [base64.b64encode(i.to_bytes(32, "big")).decode() for i in range(1, 1001)]
    peers = "".join(
        f'      p{i}: {{<<: *peer, public_key: "{key}"}}\n' for i, key in enumerate(keys)
    )
    text = (
        GOOD.replace(
            "    peers:\n", "    x-peer: &peer {plugin: prog, protocol: ipv4}\n    peers:\n"
        )
        + peers
    )
    cfg = parse_config(text, source="big.yaml")
    assert len(cfg.interfaces["wg0"].peers) == 1001
