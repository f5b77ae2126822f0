"""The shell store against small real plugin programs written to tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stunmeshd.config import PluginConfig
from stunmeshd.errors import StoreError
from stunmeshd.stores.shell import ShellStore

KEY = "f9022a8f02048b82ac6bb16887c666834ae6c204"
VALUE = "000102030405060708090a0b0c0d0e0f1011121314151617ebd1a9e3"


def plugin(tmp_path: Path, body: str, name: str = "plugin.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def store(command: Path | str, *args: str, timeout: float = 10.0) -> ShellStore:
    cfg = PluginConfig(name="sh", type="shell", command=str(command), args=args, timeout=timeout)
    return ShellStore.from_config(cfg)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.fixture(autouse=True)
def kill_leftovers(tmp_path: Path) -> Iterator[None]:
    """Even when a test fails, no plugin process it started outlives it."""
    yield
    pids = tmp_path / "pids"
    for pid in map(int, pids.read_text().split() if pids.exists() else ()):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if gone(pid) or not (b"sleep" in cmdline or bytes(tmp_path) in cmdline):
                continue
            group = os.getpgid(pid)
            if group != os.getpgid(0):  # never our own group
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)


async def wait_gone(pid: int) -> bool:
    for _ in range(250):
        if gone(pid):
            return True
        await asyncio.sleep(0.02)
    return gone(pid)


# stunmesh-go's own test plugin style: eval the assignments.
EVAL_PLUGIN = """\
    input=$(cat)
    printf '%s\\n--\\n' "$input" >> "$1/stdin"
    eval "$input"
    case $STUNMESH_ACTION in
        get) [ -f "$1/$STUNMESH_KEY" ] && cat "$1/$STUNMESH_KEY" ;;
        set) printf '  %s\\n\\n' "$STUNMESH_VALUE" > "$1/$STUNMESH_KEY" ;;
    esac
    exit 0
"""


async def test_set_then_get_and_the_exact_stdin(tmp_path: Path) -> None:
    s = store(plugin(tmp_path, EVAL_PLUGIN), str(tmp_path))
    assert await s.get(KEY) is None  # nothing printed: no record
    await s.set(KEY, VALUE)
    assert await s.get(KEY) == VALUE  # surrounding whitespace trimmed
    assert (tmp_path / "stdin").read_text().split("--\n") == [
        f"STUNMESH_ACTION=get\nSTUNMESH_KEY={KEY}\n",
        f"STUNMESH_ACTION=set\nSTUNMESH_KEY={KEY}\nSTUNMESH_VALUE={VALUE}\n",
        f"STUNMESH_ACTION=get\nSTUNMESH_KEY={KEY}\n",
        "",
    ]


async def test_the_command_runs_without_a_shell(tmp_path: Path) -> None:
    body = """\
        cat > /dev/null
        printf '%s|%s' "$1" "$2"
    """
    s = store(plugin(tmp_path, body), "a b", "$(echo x)")
    assert await s.get(KEY) == "a b|$(echo x)"


async def test_only_whitespace_is_no_record(tmp_path: Path) -> None:
    assert await store(plugin(tmp_path, "printf ' \\n\\t\\n'\n")).get(KEY) is None


async def test_non_zero_exit_reports_trimmed_stderr(tmp_path: Path) -> None:
    body = """\
        echo 'partial output'
        printf '\\n  key not found  \\n' >&2
        exit 1
    """
    with pytest.raises(StoreError) as info:
        await store(plugin(tmp_path, body)).get(KEY)
    assert str(info.value) == "shell plugin 'sh': get failed: exit status 1: key not found"


async def test_non_zero_exit_without_stderr(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"set failed: exit status 7$"):
        await store(plugin(tmp_path, "exit 7\n")).set(KEY, VALUE)


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="killed by signal 15"):
        await store(plugin(tmp_path, "kill -TERM $$\n")).get(KEY)


async def test_stderr_is_bounded_and_control_characters_removed(tmp_path: Path) -> None:
    body = """\
        i=0
        while [ $i -lt 2000 ]; do echo "noise $i" >&2; i=$((i+1)); done
        printf 'the \\033[31mreal\\033[0m reason\\n' >&2
        exit 2
    """
    with pytest.raises(StoreError) as info:
        await store(plugin(tmp_path, body)).get(KEY)
    message = str(info.value)
    assert message.endswith("the ?[31mreal?[0m reason")
    assert len(message) < 600 and "noise 0;" not in message


async def test_non_utf8_output_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not UTF-8"):
        await store(plugin(tmp_path, "printf '\\377\\376'\n")).get(KEY)


async def test_a_hanging_plugin_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"""\
        echo $$ > {pids}
        (sleep 300; echo never) &
        echo $! >> {pids}
        sleep 300
    """
    with pytest.raises(
        StoreError, match=r"shell plugin 'sh': set failed: .* timed out after 0\.3 s"
    ):
        await store(plugin(tmp_path, body), timeout=0.3).set(KEY, VALUE)
    leader, child = (int(p) for p in pids.read_text().split())
    assert gone(leader)
    assert await wait_gone(child)


async def test_oversized_output(tmp_path: Path) -> None:
    body = "head -c 70000 /dev/zero | tr '\\0' a\n"
    with pytest.raises(StoreError, match="output exceeds 65536 bytes"):
        await store(plugin(tmp_path, body)).get(KEY)


async def test_output_just_under_the_limit_is_fine(tmp_path: Path) -> None:
    body = "head -c 65536 /dev/zero | tr '\\0' a\n"
    assert await store(plugin(tmp_path, body)).get(KEY) == "a" * 65536


async def test_missing_and_not_executable_commands(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        await store(tmp_path / "missing.sh").get(KEY)
    path = plugin(tmp_path, "exit 0\n")
    path.chmod(0o600)
    with pytest.raises(StoreError, match="permission denied"):
        await store(path).get(KEY)
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="cannot run"):
        await store(tmp_path / "dir").get(KEY)


@pytest.mark.parametrize(
    "value", ["ab\nSTUNMESH_KEY=0000000000000000000000000000000000000000", "ab;rm -rf /", "$(id)"]
)
async def test_injection_through_the_value_is_impossible(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "ran"
    s = store(plugin(tmp_path, f"touch {marker}\n"))
    with pytest.raises(StoreError, match="invalid value"):
        await s.set(KEY, value)
    with pytest.raises(StoreError, match="invalid key"):
        await s.get(KEY[:-1] + "\n")
    assert not marker.exists()
