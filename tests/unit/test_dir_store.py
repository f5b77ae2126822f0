"""examples/plugins/dirstore.sh end to end: through the shell store, and called directly."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stunmeshd import crypto
from stunmeshd.config import PluginConfig
from stunmeshd.errors import StoreError
from stunmeshd.stores import create_store

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "dirstore.sh"
KEY = "12850bc1c76f60f1b38169066b58097a94c7c366"
A_PRIV, B_PRIV = b"\x01" * 32, b"\x02" * 32


def dir_store(*args: str, name: str = "files"):
    return create_store(PluginConfig(name=name, type="shell", command=str(SCRIPT), args=args))


def run_script(stdin: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env=env if env is not None else {"PATH": os.environ["PATH"]},
    )


async def test_set_get_overwrite_and_missing(tmp_path: Path) -> None:
    records = tmp_path / "records"
    store = dir_store(str(records))
    assert await store.get(KEY) is None  # directory not even created yet
    await store.set(KEY, "00ff")
    assert await store.get(KEY) == "00ff"
    await store.set(KEY, "abcdef")
    assert await store.get(KEY) == "abcdef"
    assert await store.get("0" * 40) is None
    assert sorted(p.name for p in records.iterdir()) == [KEY]  # no temporary files left
    assert (records / KEY).stat().st_mode & 0o077 == 0


async def test_two_hosts_exchange_sealed_records(tmp_path: Path, monkeypatch) -> None:
    a_pub, b_pub = crypto.public_key(A_PRIV), crypto.public_key(B_PRIV)
    host_a = dir_store(str(tmp_path), name="a")  # directory as argument
    monkeypatch.setenv("STUNMESH_STORE_DIR", str(tmp_path))
    host_b = dir_store(name="b")  # directory from the environment
    record = crypto.EndpointRecord(ipv4="198.51.100.10:40000", ts=1)
    await host_a.set(crypto.publish_key(a_pub, b_pub), crypto.seal(record.to_json(), A_PRIV, b_pub))
    fetched = await host_b.get(crypto.fetch_key(b_pub, a_pub))
    assert fetched is not None
    assert crypto.open_record(fetched, B_PRIV, a_pub) == record
    assert await host_a.get(crypto.fetch_key(a_pub, b_pub)) is None


async def test_errors_reach_the_store_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STUNMESH_STORE_DIR", raising=False)
    with pytest.raises(StoreError, match="dirstore: no directory"):
        await dir_store().get(KEY)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="dirstore: cannot create directory"):
        await dir_store(str(blocker / "sub")).set(KEY, "00")


@pytest.mark.parametrize(
    "key",
    [
        "../../../../../../tmp/dirstore-escape-" + "0" * 10,
        "/" + "0" * 39,
        "ABCDEF" + "0" * 34,
        "0" * 39,
        "0" * 41,
        "",
        "0" * 39 + "*",
    ],
)
def test_bad_keys_are_refused_and_nothing_is_written(tmp_path: Path, key: str) -> None:
    records = tmp_path / "records"
    result = run_script(
        f"STUNMESH_ACTION=set\nSTUNMESH_KEY={key}\nSTUNMESH_VALUE=00\n", str(records)
    )
    assert result.returncode == 1
    assert "invalid key" in result.stderr
    assert not records.exists()
    assert not Path("/tmp/dirstore-escape-" + "0" * 10).exists()
    result = run_script(f"STUNMESH_ACTION=get\nSTUNMESH_KEY={key}\n", str(records))
    assert result.returncode == 1 and result.stdout == ""


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        (f"STUNMESH_KEY={KEY}\n", "no STUNMESH_ACTION"),
        (f"STUNMESH_ACTION=delete\nSTUNMESH_KEY={KEY}\n", "unknown action: delete"),
        (f"STUNMESH_ACTION=set\nSTUNMESH_KEY={KEY}\n", "invalid value"),
        (f"STUNMESH_ACTION=set\nSTUNMESH_KEY={KEY}\nSTUNMESH_VALUE=$(id)\n", "invalid value"),
    ],
)
def test_bad_requests(tmp_path: Path, stdin: str, reason: str) -> None:
    result = run_script(stdin, str(tmp_path / "records"))
    assert result.returncode == 1 and reason in result.stderr
    assert not (tmp_path / "records" / KEY).exists()


def test_input_without_a_final_newline_and_env_directory(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "STUNMESH_STORE_DIR": str(tmp_path)}
    result = run_script(f"STUNMESH_ACTION=set\nSTUNMESH_KEY={KEY}\nSTUNMESH_VALUE=0a0b", env=env)
    assert result.returncode == 0, result.stderr
    result = run_script(f"STUNMESH_ACTION=get\nSTUNMESH_KEY={KEY}", env=env)
    assert (result.returncode, result.stdout) == (0, "0a0b\n")


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash not installed")
def test_runs_under_a_strict_posix_shell(tmp_path: Path) -> None:
    stdin = f"STUNMESH_ACTION=set\nSTUNMESH_KEY={KEY}\nSTUNMESH_VALUE=beef\n"
    result = subprocess.run(
        ["dash", str(SCRIPT), str(tmp_path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / KEY).read_text() == "beef\n"
