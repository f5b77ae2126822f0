"""The store registry (built-ins, entry points, config errors) and dedup."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stunmeshd.config import PluginConfig
from stunmeshd.crypto import EndpointRecord
from stunmeshd.errors import ConfigError, StoreError
from stunmeshd.stores import DedupStore, builtin_names, create_store, publish
from stunmeshd.stores.exec import ExecStore
from stunmeshd.stores.shell import ShellStore

KEY = "12850bc1c76f60f1b38169066b58097a94c7c366"
TOKEN = "cf-token-s3cr3t-value"


def install_fake_distribution(root: Path, entry_points: str, modules: dict[str, str]) -> None:
    """A real installed distribution on sys.path: dist-info with entry_points.txt + modules."""
    info = root / "fakestores-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakestores\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stunmeshd.stores]\n" + textwrap.dedent(entry_points))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


FAKE_MODULE = """\
    from stunmeshd.errors import ConfigError

    class MemoryStore:
        def __init__(self, name, options):
            self.name = name
            self.options = dict(options)
            self.data = {}

        @classmethod
        def from_config(cls, cfg):
            if "bucket" not in cfg.options:
                raise ConfigError("bucket is required", key=f"plugins.{cfg.name}.bucket")
            return cls(cfg.name, cfg.options)

        async def get(self, key):
            return self.data.get(key)

        async def set(self, key, value):
            self.data[key] = value

        async def close(self):
            pass

    class ExpiringStore(MemoryStore):
        dedup_safe = False

        @classmethod
        def from_config(cls, cfg):
            return cls(cfg.name, cfg.options)

    class Leaky(MemoryStore):
        @classmethod
        def from_config(cls, cfg):
            raise ValueError(f"token {cfg.options['token']} was refused")

    class NoFactory:
        pass

    class Incomplete:
        @classmethod
        def from_config(cls, cfg):
            return cls()
"""


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install_fake_distribution(
        tmp_path,
        """\
        memory = fake_store_mod:MemoryStore
        expiring = fake_store_mod:ExpiringStore
        leaky = fake_store_mod:Leaky
        nofactory = fake_store_mod:NoFactory
        incomplete = fake_store_mod:Incomplete
        broken = fake_store_missing_mod:Store
        """,
        {"fake_store_mod": FAKE_MODULE},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("fake_store_mod", None)


# -- names and discovery --------------------------------------------------------------------


def test_builtin_names_include_stunmeshds_own() -> None:
    assert {"cloudflare", "opendht"} <= builtin_names()


def test_entry_points_are_discovered(fake_dist: None) -> None:
    assert {"memory", "expiring", "broken", "cloudflare", "opendht"} <= builtin_names()
    cfg = PluginConfig(name="mem", type="builtin", builtin="memory", options={"bucket": "b1"})
    store = create_store(cfg)
    assert type(store).__name__ == "MemoryStore"
    assert store.name == "mem" and store.options == {"bucket": "b1"}


def test_builtins_are_imported_only_when_used() -> None:
    code = (
        "import sys, stunmeshd.stores.registry as r; r.builtin_names();"
        "print(sorted(m for m in sys.modules if m in "
        "('stunmeshd.stores.cloudflare', 'stunmeshd.stores.opendht', 'aiohttp')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# -- exec and shell --------------------------------------------------------------------------


def test_exec_and_shell_are_built_without_io(tmp_path: Path) -> None:
    missing = str(tmp_path / "does-not-exist")
    exec_store = create_store(
        PluginConfig(name="e", type="exec", command=missing, args=("-x",), timeout=3)
    )
    shell_store = create_store(PluginConfig(name="s", type="shell", command=missing))
    assert isinstance(exec_store, ExecStore) and exec_store.name == "e"
    assert exec_store.argv == (missing, "-x") and exec_store.timeout == 3.0
    # no timeout configured: long enough for stunmesh-go's contrib scripts to fail over
    assert isinstance(shell_store, ShellStore) and shell_store.timeout == 120.0


@pytest.mark.parametrize(
    ("cfg", "key", "reason"),
    [
        (PluginConfig(name="p", type="exec"), "plugins.p.command", "command is required"),
        (PluginConfig(name="p", type="shell", command="  "), "plugins.p.command", "required"),
        (PluginConfig(name="p", type="exec", command="a\0b"), "plugins.p.command", "NUL"),
        (
            PluginConfig(name="p", type="exec", command="x", args=("a", 3)),  # type: ignore[arg-type]
            "plugins.p.args",
            "list of strings",
        ),
        (
            PluginConfig(name="p", type="exec", command="x", args="-v"),  # type: ignore[arg-type]
            "plugins.p.args",
            "list of strings",
        ),
        (
            PluginConfig(name="p", type="exec", command="x", timeout=0),
            "plugins.p.timeout",
            "positive",
        ),
        (
            PluginConfig(name="p", type="exec", command="x", timeout=-1),
            "plugins.p.timeout",
            "positive",
        ),
        (
            PluginConfig(name="p", type="shell", command="x", timeout=float("inf")),
            "plugins.p.timeout",
            "positive",
        ),
        (
            PluginConfig(name="p", type="shell", command="x", timeout="10"),  # type: ignore[arg-type]
            "plugins.p.timeout",
            "positive",
        ),
        (PluginConfig(name="p", type="grpc"), "plugins.p.type", "unknown plugin type 'grpc'"),
        (PluginConfig(name="p", type="builtin"), "plugins.p.name", "needs a name"),
        (
            PluginConfig(name="p", type="builtin", builtin="redis"),
            "plugins.p.name",
            "unknown builtin store 'redis'; known: cloudflare, opendht",
        ),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(
    cfg: PluginConfig, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        create_store(cfg)
    assert info.value.key == key
    assert reason in info.value.reason


# -- third-party stores that misbehave -------------------------------------------------------


def test_third_party_config_error_passes_through(fake_dist: None) -> None:
    with pytest.raises(ConfigError) as info:
        create_store(PluginConfig(name="m", type="builtin", builtin="memory"))
    assert info.value.key == "plugins.m.bucket"


def test_an_unloadable_entry_point_is_a_config_error(fake_dist: None) -> None:
    with pytest.raises(ConfigError) as info:
        create_store(PluginConfig(name="b", type="builtin", builtin="broken"))
    assert info.value.key == "plugins.b.name"
    assert "cannot be loaded: ModuleNotFoundError" in info.value.reason


def test_an_unexpected_error_never_leaks_the_token(fake_dist: None) -> None:
    cfg = PluginConfig(name="l", type="builtin", builtin="leaky", options={"token": TOKEN})
    with pytest.raises(ConfigError) as info:
        create_store(cfg)
    assert TOKEN not in str(info.value)
    assert "rejected its configuration: ValueError: token *** was refused" in str(info.value)
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("nofactory", "no from_config"), ("incomplete", "does not implement the Store protocol")],
)
def test_classes_breaking_the_contract(fake_dist: None, name: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        create_store(PluginConfig(name="x", type="builtin", builtin=name))


# -- dedup -----------------------------------------------------------------------------------

COUNTING_PLUGIN = """\
    #!/bin/sh
    eval "$(cat)"
    [ "$STUNMESH_ACTION" = set ] || exit 0
    [ -e "$1/fail" ] && { echo 'backend down' >&2; exit 1; }
    echo "$STUNMESH_VALUE" >> "$1/writes"
"""


def counting_store(tmp_path: Path, *, dedup: bool) -> Any:
    script = tmp_path / "count.sh"
    script.write_text(textwrap.dedent(COUNTING_PLUGIN))
    script.chmod(0o755)
    cfg = PluginConfig(
        name="c", type="shell", command=str(script), args=(str(tmp_path),), dedup=dedup
    )
    return create_store(cfg)


def writes(tmp_path: Path) -> list[str]:
    path = tmp_path / "writes"
    return path.read_text().split() if path.exists() else []


async def test_dedup_skips_unchanged_endpoints_like_stunmesh_go(tmp_path: Path) -> None:
    store = counting_store(tmp_path, dedup=True)
    assert isinstance(store, DedupStore) and store.name == "c"
    first = EndpointRecord(ipv4="198.51.100.10:40000", ts=1)
    same_later = EndpointRecord(ipv4="198.51.100.10:40000", ts=2)  # only ts differs
    moved = EndpointRecord(ipv4="198.51.100.10:40001", ts=3)
    assert await publish(store, KEY, "aa", first.fingerprint) is True
    assert await publish(store, KEY, "bb", same_later.fingerprint) is False
    assert await publish(store, KEY, "cc", moved.fingerprint) is True
    assert await publish(store, KEY, "dd", moved.fingerprint, force=True) is True
    other_key = "f" * 40
    assert await publish(store, other_key, "ee", moved.fingerprint) is True
    assert writes(tmp_path) == ["aa", "cc", "dd", "ee"]


async def test_without_dedup_every_publish_writes(tmp_path: Path) -> None:
    store = counting_store(tmp_path, dedup=False)
    assert isinstance(store, ShellStore)
    fingerprint = EndpointRecord(ipv4="198.51.100.10:40000").fingerprint
    assert await publish(store, KEY, "aa", fingerprint) is True
    assert await publish(store, KEY, "bb", fingerprint) is True
    assert writes(tmp_path) == ["aa", "bb"]


async def test_a_failed_write_is_not_remembered(tmp_path: Path) -> None:
    store = counting_store(tmp_path, dedup=True)
    fingerprint = EndpointRecord(ipv4="198.51.100.10:40000").fingerprint
    (tmp_path / "fail").touch()
    with pytest.raises(StoreError, match="backend down"):
        await publish(store, KEY, "aa", fingerprint)
    (tmp_path / "fail").unlink()
    assert await publish(store, KEY, "bb", fingerprint) is True
    assert writes(tmp_path) == ["bb"]


async def test_plain_set_on_a_dedup_store_always_writes_and_resets(tmp_path: Path) -> None:
    store = counting_store(tmp_path, dedup=True)
    fingerprint = EndpointRecord(ipv4="198.51.100.10:40000").fingerprint
    await publish(store, KEY, "aa", fingerprint)
    await store.set(KEY, "bb")  # unknown content now
    assert await publish(store, KEY, "cc", fingerprint) is True
    store.forget()
    assert await publish(store, KEY, "dd", fingerprint) is True
    assert writes(tmp_path) == ["aa", "bb", "cc", "dd"]
    assert store.timeout == 120.0  # the wrapped store's attributes stay visible


def test_dedup_is_ignored_for_stores_whose_records_expire(
    fake_dist: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = create_store(PluginConfig(name="x", type="builtin", builtin="expiring", dedup=True))
    assert not isinstance(store, DedupStore)
    assert "plugins.x.dedup: ignored" in caplog.text
    wrapped = create_store(
        PluginConfig(name="m", type="builtin", builtin="memory", dedup=True, options={"bucket": 1})
    )
    assert isinstance(wrapped, DedupStore) and wrapped.options == {"bucket": 1}
