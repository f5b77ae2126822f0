"""What the daemon imports: only what the configured stores and backends need."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest


def loaded(code: str, names: tuple[str, ...]) -> list[str]:
    """The ``names`` present in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([n for n in {names!r} if n in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


# stunmeshctl's side is pinned by tests/unit/test_ctl_view.py (only client modules).


@pytest.mark.parametrize("entry", ["stunmeshd.service", "stunmeshd.engine", "stunmeshd.netwatch"])
def test_the_daemon_loads_no_http_stack_and_no_netlink_library_up_front(entry: str) -> None:
    # all importable here (pyroute2 from the test extra), so "not loaded" means "not imported";
    # the package's runtime has no pyroute2 at all (tests/packaging/test_install.py)
    heavy = ("aiohttp", "pyroute2", "stunmeshd.stores.cloudflare", "stunmeshd.stores.opendht")
    assert all(importlib.util.find_spec(name) for name in heavy)
    assert loaded(f"import {entry}", heavy) == []


def test_a_program_store_is_loaded_only_when_a_plugin_runs_a_program() -> None:
    programs = ("stunmeshd.stores.exec", "stunmeshd.stores.shell", "stunmeshd.stores.process")
    assert loaded("import stunmeshd.service, stunmeshd.engine", programs) == []
    code = (
        "from stunmeshd.config import PluginConfig\n"
        "from stunmeshd.stores import create_store\n"
        "create_store(PluginConfig(name='s', type='shell', command='true'))"
    )
    assert loaded(code, programs) == ["stunmeshd.stores.shell", "stunmeshd.stores.process"]


# aiohttp's import tree: ~12 MB of a daemon's RSS that the OpenDHT store does without
AIOHTTP_TREE = ("aiohttp", "email", "http.client", "urllib.request", "yarl", "multidict", "attr")


def test_an_opendht_store_brings_h11_and_nothing_of_aiohttps_tree() -> None:
    code = (
        "from stunmeshd.config import PluginConfig\n"
        "from stunmeshd.stores import create_store\n"
        "import asyncio\n"
        "store = create_store(PluginConfig(name='d', type='builtin', builtin='opendht',"
        " options={'endpoints': ['http://127.0.0.1:1', 'https://127.0.0.1:1']}))\n"
        "try:\n"
        "    asyncio.run(store.get('0' * 40))\n"  # every module a request and a TLS connect use
        "except Exception as exc:\n"
        "    assert 'every endpoint failed' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a get from two dead endpoints succeeded')\n"
    )
    names = ("h11", "stunmeshd.stores.cloudflare", *AIOHTTP_TREE)
    assert loaded(code, names) == ["h11"]


def test_a_cloudflare_store_brings_aiohttp_when_configured() -> None:
    code = (
        "from stunmeshd.config import PluginConfig\n"
        "from stunmeshd.stores import create_store\n"
        "create_store(PluginConfig(name='c', type='builtin', builtin='cloudflare',"
        " options={'zone': 'example.org', 'token': 't'}))"
    )
    assert loaded(code, ("aiohttp", "stunmeshd.stores.opendht")) == ["aiohttp"]


def test_kernel_wireguard_costs_one_module_and_no_netlink_library() -> None:
    """Every daemon that drives a kernel device pays this import at start-up, before its
    first handshake: pyroute2's ~160 modules took 1.2-2 s under the VM tier's TCG."""
    probe = (
        "import json, sys\nimport stunmeshd.service\nbefore = set(sys.modules)\n"
        "import stunmeshd.wireguard as wg\nwg.NetlinkBackend()\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.splitlines()[-1]) == ["stunmeshd.wireguard.netlink"]


def test_netcheck_loads_the_port_mapper_and_upnp_only_when_probing() -> None:
    heavy = ("async_upnp_client", "aiohttp", "stunmeshd.portmap.client")
    assert loaded("import stunmeshd.ctl.netcheck", heavy) == []


def test_port_mapping_auto_with_a_shell_store_loads_no_http_stack_until_an_igd_answers() -> None:
    """The daemon's parts for a shell store and ``port_mapping: auto`` probe all three
    protocols, the SSDP search included (nothing answers here), without aiohttp or the UPnP
    library: they load only when a gateway device answered and is asked to map."""
    code = (
        "import asyncio, ipaddress\n"
        "import stunmeshd.service, stunmeshd.engine\n"
        "from stunmeshd.config import PluginConfig\n"
        "from stunmeshd.stores import create_store\n"
        "from stunmeshd.portmap.client import Gateway, PortMapClient\n"
        "from stunmeshd.portmap.machine import ALL_PROTOCOLS\n"
        "create_store(PluginConfig(name='d', type='shell', command='true'))\n"
        "gw = Gateway('127.0.0.1', '127.0.0.1', ipaddress.IPv4Network('127.0.0.0/8'))\n"
        "assert asyncio.run(PortMapClient(gw).probe(ALL_PROTOCOLS)) is None\n"
    )
    assert loaded(code, ("aiohttp", "async_upnp_client", "stunmeshd.portmap.ssdp")) == [
        "stunmeshd.portmap.ssdp"
    ]


def test_the_daemons_command_line_does_not_load_shutil_and_the_compressors() -> None:
    """argparse's default help formatter imports shutil (with zlib, bz2 and lzma) for the
    terminal width on every add_argument; the daemon's formatter is told the width."""
    code = "import stunmeshd.daemon as d\nd.build_parser().parse_args(['-c', 'x'])"
    assert loaded(code, ("shutil", "bz2", "lzma")) == []


def test_the_daemon_leaves_pathlib_zlib_and_nacl_public_to_the_tools() -> None:
    """The daemon handles its few paths as str (os.path), checks STUN fingerprints with
    binascii.crc32 and seals with libsodium's crypto_box from nacl.bindings: pathlib (with
    fnmatch and ntpath), zlib and nacl.public's classes would cost every daemon ~0.4 MB of RSS
    for nothing it needs. stunmeshctl, the lab and the tests use them freely."""
    code = (
        "import stunmeshd.daemon as d, stunmeshd.service, stunmeshd.engine, stunmeshd.bus.service\n"
        "import stunmeshd.stores.opendht, stunmeshd.portmap.client, stunmeshd.wireguard.netlink\n"
        "from stunmeshd.config import parse_config\n"
        "from stunmeshd.stun.codec import encode_binding_request, parse_message\n"
        "from stunmeshd.wireguard import backend_for\n"
        "d.build_parser().parse_args(['-c', 'x'])\n"
        "parse_config('interfaces: {}', source='x')\n"
        "backend_for('wg0')\n"
        "parse_message(encode_binding_request()[1])\n"
        "from stunmeshd import crypto\n"
        "key = crypto.public_key(bytes(32))\n"
        "crypto.open_sealed(crypto.seal(b'{}', bytes(32), key), bytes(32), key)\n"
    )
    assert loaded(code, ("pathlib", "zlib", "nacl.public")) == []


def test_the_daemons_help_still_wraps_to_the_terminal_width() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stunmeshd", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "60"},
    )
    assert max(len(line) for line in out.stdout.splitlines()) <= 58
    assert "--oneshot-wait" in out.stdout
