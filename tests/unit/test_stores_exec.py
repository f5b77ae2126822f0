"""The exec store against small real plugin programs written to tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stunmeshd.config import PluginConfig
from stunmeshd.errors import StoreError
from stunmeshd.stores.exec import ExecStore

KEY = "12850bc1c76f60f1b38169066b58097a94c7c366"
VALUE = "000102030405060708090a0b0c0d0e0f1011121314151617ebd1a9e3"


def plugin(tmp_path: Path, body: str, name: str = "plugin.sh") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def store(command: Path | str, *args: str, timeout: float = 10.0) -> ExecStore:
    cfg = PluginConfig(name="ext", type="exec", command=str(command), args=args, timeout=timeout)
    return ExecStore.from_config(cfg)


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
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
    """SIGKILL is asynchronous for grandchildren: give the kernel a moment."""
    for _ in range(250):
        if gone(pid):
            return True
        await asyncio.sleep(0.02)
    return gone(pid)


# A small file-backed exec plugin, as a stunmesh-go user would write it.
FILE_PLUGIN = """\
    read -r request
    printf '%s\\n' "$request" >> "$1/requests"
    action=$(printf '%s' "$request" | sed -n 's/.*"action":"\\([a-z]*\\)".*/\\1/p')
    key=$(printf '%s' "$request" | sed -n 's/.*"key":"\\([0-9a-f]*\\)".*/\\1/p')
    value=$(printf '%s' "$request" | sed -n 's/.*"value":"\\([0-9a-f]*\\)".*/\\1/p')
    case $action in
        set) printf '%s' "$value" > "$1/$key"; echo '{"success":true}' ;;
        get) if [ -f "$1/$key" ]; then
                 printf '{"success":true,"value":"%s"}\\n' "$(cat "$1/$key")"
             else
                 echo '{"success":true}'
             fi ;;
    esac
"""


async def test_set_then_get_round_trip_and_the_exact_requests(tmp_path: Path) -> None:
    s = store(plugin(tmp_path, FILE_PLUGIN), str(tmp_path))
    assert await s.get(KEY) is None  # success without a value: no record yet
    await s.set(KEY, VALUE)
    assert await s.get(KEY) == VALUE
    requests = (tmp_path / "requests").read_text().splitlines()
    assert requests == [
        f'{{"action":"get","key":"{KEY}"}}',
        f'{{"action":"set","key":"{KEY}","value":"{VALUE}"}}',
        f'{{"action":"get","key":"{KEY}"}}',
    ]
    assert all(json.loads(line)["key"] == KEY for line in requests)


async def test_one_store_serves_concurrent_operations(tmp_path: Path) -> None:
    s = store(plugin(tmp_path, FILE_PLUGIN), str(tmp_path))
    keys = [f"{i:040x}" for i in range(8)]
    await asyncio.gather(*(s.set(k, f"{i:02x}" * 4) for i, k in enumerate(keys)))
    assert await asyncio.gather(*(s.get(k) for k in keys)) == [f"{i:02x}" * 4 for i in range(8)]


@pytest.mark.parametrize(
    "answer",
    ['{"success":true,"value":""}', '{"success":true,"value":null}', '  \n {"success":true}'],
)
async def test_success_without_a_value_is_no_record(tmp_path: Path, answer: str) -> None:
    s = store(plugin(tmp_path, f"cat >/dev/null; printf '%s' '{answer}'\n"))
    assert await s.get(KEY) is None


async def test_only_the_first_json_object_counts_like_gos_decoder(tmp_path: Path) -> None:
    body = f"""\
        echo '{{"Success":true,"VALUE":"{VALUE}"}}'
        echo '{{"success":false,"error":"ignored"}} trailing junk'
    """
    assert await store(plugin(tmp_path, body)).get(KEY) == VALUE


async def test_the_plugin_inherits_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STUNMESH_TEST_VALUE", "abcd")
    body = """echo "{\\"success\\":true,\\"value\\":\\"$STUNMESH_TEST_VALUE\\"}"\n"""
    assert await store(plugin(tmp_path, body)).get(KEY) == "abcd"


async def test_args_are_passed_without_a_shell(tmp_path: Path) -> None:
    body = """\
        printf '%s' "$1" > "$2"
        echo '{"success":true}'
    """
    out = tmp_path / "arg"
    await store(plugin(tmp_path, body), "$(touch pwned) ; *", str(out)).set(KEY, VALUE)
    assert out.read_text() == "$(touch pwned) ; *"
    assert not (tmp_path / "pwned").exists()


async def test_args_never_appear_in_errors_or_repr(tmp_path: Path) -> None:
    # stunmesh-go's own plugins take API tokens as arguments.
    token = "cf-api-token-0123456789"
    s = store(plugin(tmp_path, "sleep 300\n"), "-token", token, timeout=0.2)
    with pytest.raises(StoreError) as info:
        await s.get(KEY)
    assert token not in str(info.value) and token not in repr(s)


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "reason"),
    [
        ("", "no answer on stdout"),
        ("not json at all", "answer is not JSON: 'not json at all'"),
        ("[true]", "answer is not a JSON object"),
        ('{"success":"yes"}', "success is not a boolean"),
        ('{"success":true,"value":42}', "value is not a string"),
    ],
)
async def test_invalid_answers(tmp_path: Path, stdout: str, reason: str) -> None:
    s = store(plugin(tmp_path, f"printf '%s' '{stdout}'; echo 'plugin says hi' >&2\n"))
    with pytest.raises(StoreError) as info:
        await s.get(KEY)
    message = str(info.value)
    assert message.startswith("exec plugin 'ext': get failed: ")
    assert reason in message and "plugin says hi" in message


async def test_non_zero_exit_reports_status_and_stderr(tmp_path: Path) -> None:
    body = """\
        echo 'line one' >&2
        printf 'cannot reach backend\\n\\n' >&2
        exit 3
    """
    with pytest.raises(StoreError) as info:
        await store(plugin(tmp_path, body)).set(KEY, VALUE)
    assert str(info.value) == (
        "exec plugin 'ext': set failed: exit status 3: line one; cannot reach backend"
    )
    assert VALUE not in str(info.value)


async def test_non_zero_exit_includes_the_plugins_error_field(tmp_path: Path) -> None:
    body = """echo '{"success":false,"error":"quota exceeded"}'; exit 1\n"""
    with pytest.raises(StoreError, match=r"exit status 1 \(plugin error: quota exceeded\)"):
        await store(plugin(tmp_path, body)).get(KEY)


async def test_success_false_is_a_failure_with_the_error_text(tmp_path: Path) -> None:
    body = """echo '{"success":false,"error":"key not found"}'\n"""
    with pytest.raises(StoreError, match=r"get failed: key not found$"):
        await store(plugin(tmp_path, body)).get(KEY)


async def test_success_false_without_error_falls_back_to_stderr(tmp_path: Path) -> None:
    body = """echo 'backend down' >&2; echo '{"success":false}'\n"""
    with pytest.raises(StoreError, match=r"set failed: backend down$"):
        await store(plugin(tmp_path, body)).set(KEY, VALUE)
    body = """echo '{}'\n"""
    with pytest.raises(StoreError, match=r"success is false$"):
        await store(plugin(tmp_path, body, "quiet.sh")).set(KEY, VALUE)


async def test_a_hanging_plugin_is_killed_at_the_timeout_with_its_children(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    body = f"""\
        echo $$ > {pids}
        sleep 300 &
        echo $! >> {pids}
        wait
    """
    with pytest.raises(StoreError, match=r"timed out after 0\.5 s and was killed"):
        await store(plugin(tmp_path, body), timeout=0.5).get(KEY)
    leader, child = (int(p) for p in pids.read_text().split())
    assert gone(leader)  # reaped before get() returned
    assert await wait_gone(child)


async def test_oversized_output_is_refused_and_the_plugin_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"""\
        echo $$ > {pids}
        while :; do echo '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'; done
    """
    with pytest.raises(StoreError, match="output exceeds 65536 bytes"):
        await store(plugin(tmp_path, body)).get(KEY)
    assert gone(int(pids.read_text()))


async def test_a_plugin_ignoring_stdin_still_works(tmp_path: Path) -> None:
    body = """echo '{"success":true}'\n"""
    await store(plugin(tmp_path, body)).set(KEY, VALUE * 40)


async def test_leftover_background_process_holding_stdout_does_not_block(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    body = f"""\
        sleep 300 &
        echo $! > {pids}
        echo '{{"success":true,"value":"abcd"}}'
    """
    assert await store(plugin(tmp_path, body), timeout=30).get(KEY) == "abcd"
    assert await wait_gone(int(pids.read_text()))


async def test_cancelling_an_operation_kills_the_plugin(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"""\
        echo $$ > {pids}
        exec sleep 300
    """
    task = asyncio.create_task(store(plugin(tmp_path, body)).get(KEY))
    for _ in range(500):
        if pids.exists() and pids.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(int(pids.read_text()))


async def test_missing_command(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(StoreError, match=f"cannot run '{missing}': no such file"):
        await store(missing).get(KEY)


async def test_command_not_executable(tmp_path: Path) -> None:
    path = plugin(tmp_path, "echo '{}'\n")
    path.chmod(0o644)
    if os.geteuid() == 0 and os.access(path, os.X_OK):
        pytest.skip("root can execute files without x bits here")
    with pytest.raises(StoreError, match="permission denied"):
        await store(path).get(KEY)


@pytest.mark.parametrize("key", ["", "ABCDEF" + "0" * 34, "0" * 39, "../" + "0" * 37, "0" * 41])
async def test_bad_keys_are_refused_before_running_anything(tmp_path: Path, key: str) -> None:
    marker = tmp_path / "ran"
    s = store(plugin(tmp_path, f"touch {marker}; echo '{{\"success\":true}}'\n"))
    with pytest.raises(StoreError, match="invalid key"):
        await s.get(key)
    with pytest.raises(StoreError, match="invalid key"):
        await s.set(key, VALUE)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["", "abc", "AB", 'ab"}', "ab\nSTUNMESH_KEY=00"])
async def test_bad_values_are_refused_before_running_anything(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "ran"
    s = store(plugin(tmp_path, f"touch {marker}; echo '{{\"success\":true}}'\n"))
    with pytest.raises(StoreError, match="invalid value"):
        await s.set(KEY, value)
    assert not marker.exists()
