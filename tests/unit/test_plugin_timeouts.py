"""Plugin time limits never cut a working stunmesh-go plugin short (issue 12, part 2).

stunmesh-go runs exec/shell plugins without a time limit; its contrib OpenDHT scripts wait
15 s per proxy before failing over, so a working plugin may answer after 15 s. Its built-in
opendht store waits 15 s per request.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stunmeshd.config import load_config
from stunmeshd.engine import STORE_GRACE, store_timeout
from stunmeshd.errors import StoreError
from stunmeshd.stores import create_store

PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
KEY = "12850bc1c76f60f1b38169066b58097a94c7c366"
VALUE = "000102030405060708090a0b0c0d0e0f1011121314151617ebd1a9e3"
ANSWER_AFTER = 15.3  # s: what stunmesh-go's contrib opendht.sh took on a fail-over


def load(tmp_path: Path, plugins: str) -> dict[str, object]:
    text = textwrap.dedent(
        f"""\
        interfaces:
          wg0:
            peers:
              b: {{public_key: "{PUB_B}", plugin: slow_exec}}
        plugins:
        """
    ) + textwrap.indent(textwrap.dedent(plugins), "  ")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    cfg = load_config(path)
    return {name: (create_store(p), p) for name, p in cfg.plugins.items()}


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_defaults_follow_stunmesh_go_and_the_timeout_key_wins(tmp_path: Path) -> None:
    stores = load(
        tmp_path,
        """\
        slow_exec: {type: exec, command: /bin/true}
        slow_shell: {type: shell, command: /bin/true}
        dht: {type: builtin, name: opendht, endpoint: "http://127.0.0.1:1"}
        dht_set: {type: builtin, name: opendht, endpoint: "http://127.0.0.1:1", timeout: 40s}
        cf: {type: builtin, name: cloudflare, zone: example.com, token: t0ken}
        quick: {type: exec, command: /bin/true, timeout: 3s}
        """,
    )
    limits = {name: store.timeout for name, (store, _) in stores.items()}  # type: ignore[attr-defined]
    assert limits == {
        "slow_exec": 120.0,  # covers the contrib scripts' 15 s fail-over over eight proxies
        "slow_shell": 120.0,
        "dht": 15.0,  # stunmesh-go's opendht default
        "dht_set": 40.0,  # the opendht `timeout` key reaches the store
        "cf": 10.0,
        "quick": 3.0,
    }
    # the engine abandons an operation only after the store's own limit (plus a grace)
    for store, plugin in stores.values():
        assert store_timeout(store, plugin) == store.timeout  # type: ignore[arg-type,attr-defined]
    assert STORE_GRACE > 0


async def test_the_timeout_key_still_kills_a_stuck_plugin(tmp_path: Path) -> None:
    stuck = script(tmp_path, "stuck.sh", "exec sleep 300\n")
    stores = load(tmp_path, f'slow_exec: {{type: exec, command: "{stuck}", timeout: 1s}}\n')
    store, _ = stores["slow_exec"]
    with pytest.raises(StoreError, match="timed out after 1 s"):
        await store.get(KEY)  # type: ignore[attr-defined]
