"""Every configuration stunmesh-go runs, stunmeshd runs (issue 12, the twelve numbered forms).

stunmesh-go decodes with mapstructure's WeaklyTypedInput plus string->duration and
comma-split string->list hooks, skips peers whose key it cannot decode, and fails a peer
whose plugin is missing only when it runs. Each form here loads; weakly typed values come
with a warning naming the strict form; skipped peers are disabled with their reason.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from stunmeshd.config import Config, load_config
from stunmeshd.errors import ConfigError
from tests.unit.test_check_cli import stunmeshd

PUB_A = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="
PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="


def config(*, top: str = "", plugins: str = "", iface: str = "", peers: str = "") -> str:
    """A working file (peer b on exec plugin prog) with text added at each level."""
    if "stun:" not in top:
        top += 'stun: {addresses: ["198.51.100.1:3478"]}\n'
    return (
        top
        + "plugins:\n  prog:\n    type: exec\n    command: /bin/true\n"
        + plugins
        + "interfaces:\n  wg0:\n"
        + iface
        + f'    peers:\n      b:\n        public_key: "{PUB_B}"\n        plugin: prog\n'
        + peers
    )


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def line_of(cfg: Config, text: str) -> int:
    assert cfg.source is not None
    return Path(cfg.source).read_text().splitlines().index(text) + 1


def warning_about(cfg: Config, key: str) -> str:
    found = [w for w in cfg.warnings if f": {key}: " in w]
    assert len(found) == 1, cfg.warnings
    return found[0]


# --- 1. numeric log.level --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "level", "name"),
    [
        ("5", "error", "panic"),
        ("'1'", "info", "info"),
        ("0", "debug", "debug"),
        ("-1", "debug", "trace"),
        ("2", "warning", "warn"),
    ],
)
def test_1_numeric_log_level(tmp_path: Path, value: str, level: str, name: str) -> None:
    cfg = load(tmp_path, config(top=f"log: {{level: {value}}}\n"))
    assert cfg.log.level == level
    assert f"write {name}" in warning_about(cfg, "log.level")


def test_1_log_level_number_out_of_zerolog_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log\.level"):
        load(tmp_path, config(top="log: {level: 128}\n"))


# --- 2, 3. stun.addresses as text ------------------------------------------------------------


def test_2_stun_addresses_single_string(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(top='stun: {addresses: "stun.example.com:3478"}\n'))
    assert cfg.stun_servers == ("stun.example.com:3478",)
    assert "write a YAML list: [stun.example.com:3478]" in warning_about(cfg, "stun.addresses")


def test_3_stun_addresses_comma_separated(tmp_path: Path) -> None:
    text = 'stun: {addresses: "stun1.example.com:3478,stun2.example.com:3478"}\n'
    cfg = load(tmp_path, config(top=text))
    assert cfg.stun_servers == ("stun1.example.com:3478", "stun2.example.com:3478")
    assert "[stun1.example.com:3478, stun2.example.com:3478]" in warning_about(
        cfg, "stun.addresses"
    )


def test_3_comma_separated_parts_are_still_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stun\.addresses: must be \"host:port\""):
        load(tmp_path, config(top='stun: {addresses: "a.example:3478,b.example"}\n'))


# --- 4. quoted integers ----------------------------------------------------------------------


def test_4_quoted_integer(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(top='ping_monitor: {fixed_retries: "5"}\n'))
    assert cfg.ping_monitor.fixed_retries == 5
    assert "write 5" in warning_about(cfg, "ping_monitor.fixed_retries")


def test_4_quoted_text_is_still_not_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="whole number"):
        load(tmp_path, config(top='ping_monitor: {fixed_retries: "five"}\n'))


# --- 5. quoted booleans ----------------------------------------------------------------------


def test_5_quoted_boolean(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers='        ping: {enabled: "true", target: 192.0.2.1}\n'))
    assert cfg.interfaces["wg0"].peers["b"].ping.enabled is True
    assert "write true" in warning_about(cfg, "interfaces.wg0.peers.b.ping.enabled")


def test_5_yes_stays_refused_as_stunmesh_go_refuses_it(tmp_path: Path) -> None:
    """YAML 1.2 (stunmesh-go) reads `yes` as text, which Go's ParseBool refuses."""
    with pytest.raises(ConfigError, match="write true or false"):
        load(tmp_path, config(peers="        ping: {enabled: yes, target: 192.0.2.1}\n"))


# --- 6. a host name as ping.target -----------------------------------------------------------


def test_6_host_name_ping_target(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers="        ping: {enabled: true, target: router.lan}\n"))
    ping = cfg.interfaces["wg0"].peers["b"].ping
    assert (ping.enabled, ping.target) == (True, "router.lan")
    assert not cfg.warnings


def test_6_a_target_that_is_no_name_disables_only_the_ping(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers="        ping: {enabled: true, target: 'not a host'}\n"))
    assert cfg.interfaces["wg0"].peers["b"].ping.enabled is False
    assert "not ping-monitored" in warning_about(cfg, "interfaces.wg0.peers.b.ping.target")


# --- 7. ping.enabled without a target --------------------------------------------------------


def test_7_ping_enabled_without_target(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers="        ping: {enabled: true}\n"))
    peer = cfg.interfaces["wg0"].peers["b"]
    assert peer.ping.enabled is False  # the peer runs, unmonitored
    assert "not ping-monitored" in warning_about(cfg, "interfaces.wg0.peers.b.ping.target")


# --- 8. invalid or unpadded public_key beside good peers ------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("<PEER_B_PUBLIC_KEY_BASE64>", "not valid base64"),
        ("base64_encoded_key", "not valid base64"),
        (PUB_A.rstrip("="), "lacks its '=' padding"),
        (base64.b64encode(b"\1" * 16).decode(), "16 bytes"),
        ("", "decodes to 0 bytes"),
    ],
    ids=["placeholder", "contrib-placeholder", "unpadded", "short", "empty"],
)
def test_8_bad_public_key_disables_that_peer(tmp_path: Path, key: str, reason: str) -> None:
    cfg = load(
        tmp_path, config(peers=f'      c:\n        public_key: "{key}"\n        plugin: prog\n')
    )
    iface = cfg.interfaces["wg0"]
    assert list(iface.peers) == ["b"]  # the good peer runs
    disabled = iface.disabled["c"]
    assert reason in disabled.reason and disabled.public_key is None
    assert disabled.line == line_of(cfg, "      c:")
    assert "peer disabled: " + disabled.reason in warning_about(cfg, "interfaces.wg0.peers.c")
    assert cfg.disabled_peers() == [
        f"{cfg.source}:{disabled.line}: interfaces.wg0.peers.c: {disabled.reason}"
    ]


def test_8_missing_public_key_disables_that_peer(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers="      c:\n        plugin: prog\n"))
    assert "has no public_key" in cfg.interfaces["wg0"].disabled["c"].reason


def test_8_a_key_with_line_breaks_decodes_as_go_decodes_it(tmp_path: Path) -> None:
    folded = PUB_A[:20] + "\\n" + PUB_A[20:]
    cfg = load(tmp_path, config(peers=f'      c: {{public_key: "{folded}", plugin: prog}}\n'))
    assert base64.b64encode(cfg.interfaces["wg0"].peers["c"].public_key).decode() == PUB_A


# --- 9. a peer naming a plugin that is not defined -------------------------------------------


def test_9_undefined_plugin_disables_that_peer(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers=f'      c: {{public_key: "{PUB_A}", plugin: nope}}\n'))
    disabled = cfg.interfaces["wg0"].disabled["c"]
    assert disabled.public_key == base64.b64decode(PUB_A)  # shown on the bus with its key
    assert disabled.plugin == "nope"
    assert 'names plugin "nope", which is not under plugins (prog)' in disabled.reason
    assert list(cfg.interfaces["wg0"].peers) == ["b"]


# --- 10. two peers with the same key ---------------------------------------------------------


def test_10_same_key_twice_runs_the_first(tmp_path: Path) -> None:
    cfg = load(tmp_path, config(peers=f'      c: {{public_key: "{PUB_B}", plugin: prog}}\n'))
    iface = cfg.interfaces["wg0"]
    assert list(iface.peers) == ["b"]
    assert 'same public key as peer "b"' in iface.disabled["c"].reason


def test_10_the_same_key_on_two_interfaces_is_two_peers(tmp_path: Path) -> None:
    text = config() + f'  wg1:\n    peers:\n      b: {{public_key: "{PUB_B}", plugin: prog}}\n'
    cfg = load(tmp_path, text)
    assert not any(i.disabled for i in cfg.interfaces.values())


# --- 11, 12. dedup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dedup", "warned"),
    [
        ("yes", False, True),
        ("on", False, True),
        ("1", False, True),  # a YAML number is not "1": parseDedup reads it as false
        ('"1"', True, True),
        ('"true"', True, True),
        ('"True"', False, True),
        ("True", True, False),
        ("false", False, False),
    ],
)
def test_11_dedup_reads_like_stunmesh_go(
    tmp_path: Path, value: str, dedup: bool, warned: bool
) -> None:
    cfg = load(tmp_path, config(plugins=f"    dedup: {value}\n"))
    assert cfg.plugins["prog"].dedup is dedup
    assert any("plugins.prog.dedup" in w for w in cfg.warnings) is warned


def test_12_dedup_true_on_builtin_opendht_loads_and_checks(tmp_path: Path) -> None:
    entry = "  dht:\n    type: builtin\n    name: opendht\n    endpoint: http://127.0.0.1:1\n"
    text = config(plugins=entry + "    dedup: true\n").replace("plugin: prog", "plugin: dht")
    cfg = load(tmp_path, text)
    assert "ignored" in warning_about(cfg, "plugins.dht.dedup")
    result = stunmeshd("--check", "-c", str(cfg.source))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


# --- what stunmesh-go refuses, refused too ---------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("    proxy: {listen: 70000}\n", "interfaces.wg0.proxy.listen"),
        ("    proxy: {listen: -1}\n", "interfaces.wg0.proxy.listen"),
        ("    proxy: {fib: 65536}\n", "interfaces.wg0.proxy.fib"),
        ("    proxy: {enabled: maybe}\n", "interfaces.wg0.proxy.enabled"),
        ("    listen_interfaces: {a: 1}\n", "interfaces.wg0.listen_interfaces"),
    ],
)
def test_platform_keys_stunmesh_go_refuses(tmp_path: Path, entry: str, key: str) -> None:
    text = config(iface=entry)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == key
    assert info.value.line == text.splitlines().index(entry.rstrip("\n")) + 1


def test_proxy_listen_70000_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config(iface="    proxy:\n      listen: 70000\n"))
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"stunmeshd: {path}:9: interfaces.wg0.proxy.listen: must be from 0 to 65535, not 70000"
    )


def test_valid_platform_keys_load_with_a_warning(tmp_path: Path) -> None:
    entry = '    proxy: {listen: "51999", enabled: false}\n    listen_interfaces: "eth0,eth1"\n'
    cfg = load(tmp_path, config(iface=entry))
    assert any("does nothing on Linux" in w for w in cfg.warnings)


# --- --check: one loader, three verdicts -----------------------------------------------------

# stunmesh-go's README example, as printed there: placeholder key and token.
README_EXAMPLE = """\
---
refresh_interval: "1m"
log:
  level: "info"
interfaces:
  wg0:
    peers:
      "PEER_B":
        public_key: "<PEER_B_PUBLIC_KEY_BASE64>"
        plugin: cf
stun:
  addresses: ["stun.l.google.com:19302"]
plugins:
  cf:
    type: builtin
    name: cloudflare
    zone: example.com
    token: "<CLOUDFLARE_API_TOKEN>"
    subdomain: wg
"""

# The example in stunmesh-go's contrib/opendht README.
CONTRIB_OPENDHT_EXAMPLE = """\
plugins:
  opendht:
    type: exec
    command: /usr/local/bin/stunmesh-opendht
    args:
      - "-endpoint"
      - "https://dhtproxy2.jami.net"
      - "-endpoint"
      - "https://dhtproxy3.jami.net"
    dedup: false

interfaces:
  wg0:
    peers:
      peer1:
        public_key: "base64_encoded_key"
        plugin: opendht
"""


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (README_EXAMPLE, 8, "interfaces.wg0.peers.PEER_B"),
        (CONTRIB_OPENDHT_EXAMPLE, 15, "interfaces.wg0.peers.peer1"),
    ],
    ids=["readme", "contrib-opendht"],
)
def test_check_stunmesh_go_examples_exit_1_naming_the_peer(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith(f"stunmeshd: configuration runs with 1 peer disabled: {path} (")
    assert out[1:] == [
        f"stunmeshd: disabled: {path}:{line}: {key}: public_key is not valid base64 "
        "(a WireGuard public key is 44 characters ending in '=')"
    ]
    assert f"stunmeshd: warning: {path}:{line}: {key}: peer disabled: " in result.stderr
    assert "CLOUDFLARE_API_TOKEN" not in result.stdout + result.stderr


def test_check_weakly_typed_file_exits_0_with_warnings(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    top = 'log: {level: 1}\nstun: {addresses: "a.example:3478,b.example:3478"}\n'
    path.write_text(config(top=top, peers='        ping: {enabled: "true"}\n'))
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stunmeshd: configuration OK")
    assert len(result.stderr.splitlines()) == 4  # level, addresses, enabled, target
    assert all(line.startswith("stunmeshd: warning: ") for line in result.stderr.splitlines())


def test_check_lists_every_disabled_peer(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    peers = (
        f'      c: {{public_key: "{PUB_A}", plugin: nope}}\n'
        f'      d: {{public_key: "{PUB_B}", plugin: prog}}\n'
    )
    path.write_text(config(peers=peers))
    result = stunmeshd("--check", "-c", str(path))
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0] == (
        f"stunmeshd: configuration runs with 2 peers disabled: {path} "
        "(1 interface, 1 peer, 1 plugin, 2 disabled)"
    )
    assert [line.split(": ")[3] for line in out[1:]] == [
        "interfaces.wg0.peers.c",
        "interfaces.wg0.peers.d",
    ]
