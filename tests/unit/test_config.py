"""The configuration parser as a user meets it: what a file means, and what a bad one says."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from stunmeshd import config as config_module
from stunmeshd.config import (
    DEFAULT_STUN_SERVER,
    SEARCH_DIRS,
    Config,
    find_config,
    load_config,
    locate_key,
    normalize_log_level,
    parse_config,
    parse_duration,
)
from stunmeshd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
# The docs/wire-format.md vectors: public keys of the private keys 01*32 and 02*32.
PUB_A = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="
PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
SECRET = "S3CR3T-T0KEN-do-not-print"

MINIMAL = f"""\
stun:
  addresses: ["198.51.100.1:3478"]
interfaces:
  wg0:
    peers:
      b:
        public_key: "{PUB_B}"
        plugin: dht
plugins:
  dht:
    type: builtin
    name: opendht
"""


def write(tmp_path: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, textwrap.dedent(text)))


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the test text")


def assert_one_line(message: str) -> None:
    assert message.splitlines() == [message], message
    assert "Traceback" not in message


# --- a full file -------------------------------------------------------------------------


FULL = f"""\
refresh_interval: 1h30m
log:
  level: WARN
  format: json
stun:
  address: "stun.example.net:3478"
  addresses:
    - "stun.example.net:3478"
    - "[2001:db8::1]:3478"
    - "198.51.100.1:3478"
ping_monitor:
  interval: 5s
  timeout: 500ms
  fixed_retries: 4
interfaces:
  wg0:
    protocol: dualstack
    peers:
      laptop:
        public_key: "{PUB_A}"
        plugin: cf
        protocol: prefer_ipv6
        description: "Anna's laptop"
        ping:
          enabled: true
          target: 198.19.0.2
          interval: 60s
      office:
        public_key: "{PUB_B}"
        plugin: prog
  wg1:
    peers:
      office:
        public_key: "{PUB_B}"
        plugin: script
plugins:
  cf:
    type: builtin
    name: cloudflare
    zone: example.com
    token: "{SECRET}"
    subdomain: wg
    dedup: true
  prog:
    type: exec
    command: /usr/local/bin/store
    args: ["--bucket", "wg", 8080]
    timeout: 2.5
  script:
    type: shell
    command: /usr/local/bin/store.sh
    timeout: 1m
"""


def test_full_file_means_what_it_says(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert cfg.refresh_interval == 5400.0
    assert (cfg.log.level, cfg.log.format) == ("warning", "json")
    # stun.address first, then addresses, without the repeat
    assert cfg.stun_servers == ("stun.example.net:3478", "[2001:db8::1]:3478", "198.51.100.1:3478")
    assert (cfg.ping_monitor.interval, cfg.ping_monitor.timeout) == (5.0, 0.5)
    assert cfg.ping_monitor.fixed_retries == 4

    wg0 = cfg.interfaces["wg0"]
    assert (wg0.name, wg0.protocol) == ("wg0", "dualstack")
    laptop = wg0.peers["laptop"]
    assert laptop.label == "laptop"
    assert laptop.public_key == base64.b64decode(PUB_A)
    assert (laptop.plugin, laptop.protocol) == ("cf", "prefer_ipv6")
    assert laptop.description == "Anna's laptop"
    assert laptop.ping.enabled and laptop.ping.target == "198.19.0.2"
    assert (laptop.ping.interval, laptop.ping.timeout) == (60.0, 0.0)  # 0: use ping_monitor's
    assert wg0.peers["office"].protocol == "ipv4"
    assert cfg.interfaces["wg1"].peers["office"].plugin == "script"

    cf = cfg.plugins["cf"]
    assert (cf.name, cf.type, cf.builtin, cf.command, cf.dedup) == (
        "cf",
        "builtin",
        "cloudflare",
        None,
        True,
    )
    assert dict(cf.options) == {"zone": "example.com", "token": SECRET, "subdomain": "wg"}
    prog = cfg.plugins["prog"]
    assert (prog.type, prog.command, prog.args) == (
        "exec",
        "/usr/local/bin/store",
        ("--bucket", "wg", "8080"),
    )
    assert prog.timeout == 2.5  # a number of seconds, as stunmesh-go's builtin stores read it
    assert prog.options == {}
    script = cfg.plugins["script"]
    assert (script.type, script.timeout, script.args) == ("shell", 60.0, ())

    # stun.address is deprecated: said once, nothing else to say about this file
    assert len(cfg.warnings) == 1 and "stun.address" in cfg.warnings[0]


def test_defaults(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        f"""\
        interfaces:
          wg0:
            peers:
              b: {{public_key: "{PUB_B}", plugin: x}}
        plugins:
          x: {{type: exec, command: /bin/true}}
        """,
    )
    assert cfg.refresh_interval == 600.0
    assert (cfg.log.level, cfg.log.format) == ("info", "console")
    assert cfg.stun_servers == (DEFAULT_STUN_SERVER,)
    assert (cfg.ping_monitor.interval, cfg.ping_monitor.timeout) == (1.0, 1.0)
    assert cfg.ping_monitor.fixed_retries == 3
    assert cfg.interfaces["wg0"].protocol == "ipv4"
    peer = cfg.interfaces["wg0"].peers["b"]
    assert (peer.protocol, peer.description) == ("ipv4", "")
    assert not peer.ping.enabled and peer.ping.target == ""
    plugin = cfg.plugins["x"]
    # unset: each store applies its own default (exec/shell 120 s, opendht 15 s)
    assert (plugin.timeout, plugin.dedup, plugin.args, plugin.builtin) == (None, False, (), None)
    # the default STUN server is announced, naming the file and key
    (warning,) = cfg.warnings
    assert str(tmp_path / "config.yaml") in warning and "stun.addresses" in warning
    assert DEFAULT_STUN_SERVER in warning


def test_empty_values_keep_defaults_like_stunmesh_go(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        f"""\
        refresh_interval:
        log:
          level: ""
        ping_monitor:
        stun:
          addresses: ["198.51.100.1:3478"]
        interfaces:
          wg0:
            protocol: ""
            peers:
              b: {{public_key: "{PUB_B}", plugin: x, protocol: "", ping: }}
        plugins:
          x: {{type: exec, command: /bin/true, dedup: , timeout: }}
        """,
    )
    assert cfg.refresh_interval == 600.0 and cfg.log.level == "info"
    assert cfg.interfaces["wg0"].protocol == "ipv4"
    assert cfg.interfaces["wg0"].peers["b"].protocol == "ipv4"
    assert cfg.plugins["x"].timeout is None  # the store's own default
    assert cfg.warnings == ()


def test_merge_keys_share_settings(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        f"""\
        stun: {{addresses: ["198.51.100.1:3478"]}}
        plugins:
          x: {{type: exec, command: /bin/true}}
        defaults: &peer
          plugin: x
          protocol: prefer_ipv6
        interfaces:
          wg0:
            peers:
              a: {{<<: *peer, public_key: "{PUB_A}"}}
              b: {{<<: *peer, public_key: "{PUB_B}", protocol: ipv4}}
        """,
    )
    peers = cfg.interfaces["wg0"].peers
    assert peers["a"].protocol == "prefer_ipv6" and peers["a"].plugin == "x"
    assert peers["b"].protocol == "ipv4"  # an explicit key beats the merged one
    assert any("defaults" in w and "unknown key" in w for w in cfg.warnings)


def test_a_merged_mapping_read_twice_keeps_its_overrides(tmp_path: Path) -> None:
    """A merge key with an override, in a mapping read twice (through an alias, or by two
    checks): the override wins and is not mistaken for a repeated key."""
    text = """\
x-iface: &if {protocol: ipv6, peers: {}}
x-base: &base {x: 1}
x-opts: &opts {<<: *base, x: 2}
stun: {addresses: ["198.51.100.1:3478"]}
plugins:
  p: {type: exec, command: /bin/true}
  q: {type: builtin, name: opendht, endpoint: "http://127.0.0.1:1", o1: *opts, o2: *opts}
interfaces:
  wg0:
    <<: *if
    protocol: ipv4
  wg1: *if
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.interfaces["wg0"].protocol == "ipv4"
    assert cfg.interfaces["wg1"].protocol == "ipv6"
    assert cfg.plugins["q"].options["o1"] == cfg.plugins["q"].options["o2"] == {"x": 2}


def test_example_config_is_valid_and_quiet() -> None:
    cfg = load_config(REPO / "examples" / "config.yaml")
    assert cfg.warnings == ()
    assert set(cfg.plugins) == {"cloudflare", "dht", "my_program", "my_script"}
    assert {p.type for p in cfg.plugins.values()} == {"builtin", "exec", "shell"}


# --- durations -----------------------------------------------------------------------------

S, MS, US, M, H = 10**9, 10**6, 10**3, 60 * 10**9, 3600 * 10**9

# Go's own time.ParseDuration table (time_test.go), in nanoseconds.
GOOD_DURATIONS = [
    ("0", 0),
    ("90s", 90 * S),
    ("10m", 10 * M),
    ("1h30m", 90 * M),
    ("1.5s", 1500 * MS),
    ("500ms", 500 * MS),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    (".5s", 500 * MS),
    ("1.004s", S + 4 * MS),
    ("100.00100s", 100 * S + MS),
    ("10ns", 10),
    ("11us", 11 * US),
    ("12µs", 12 * US),  # micro sign
    ("12μs", 12 * US),  # Greek mu
    ("13ms", 13 * MS),
    ("16h", 16 * H),
    ("10.5s4m", 4 * M + 10 * S + 500 * MS),
    ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6),
    ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
    ("0.3333333333333333333h", 20 * M),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("0.100000000000000000000h", 6 * M),
    ("0.830103483285477580700h", 49 * M + 48 * S + 372539827),
    ("000000000000000000000001s", S),
]

BAD_DURATIONS = [
    "",
    "3",  # a number without a unit
    "600",
    "1.5",
    "-",
    "s",
    ".",
    "-.",
    ".s",
    "+.s",
    "1d",  # Go has no days
    "1x",
    "5 s",
    " 5s",
    "1h-5m",
    "1e3s",
    "²s",
    "9223372036854775808ns",  # int64 overflow
    "9223372036854775.808us",
    "9223372036854ms775us808ns",
    "-9223372036854775809ns",
    "2562048h",
    "1" * 5000 + "s",
]


@pytest.mark.parametrize(("text", "nanoseconds"), GOOD_DURATIONS)
def test_parse_duration_reads_go_durations(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds / 1e9


@pytest.mark.parametrize("text", BAD_DURATIONS)
def test_parse_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert_one_line(str(info.value))


def test_parse_duration_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match=r"missing unit.*units: ns, us, ms, s, m, h"):
        parse_duration("90")
    with pytest.raises(ValueError, match=r'unknown unit "d"'):
        parse_duration("1d")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90.0), ('"10m"', 600.0), ("1.5s", 1.5), ("500ms", 0.5), ("1h30m", 5400.0)],
)
def test_durations_in_the_file(tmp_path: Path, value: str, seconds: float) -> None:
    cfg = load_text(tmp_path, MINIMAL + f"refresh_interval: {value}\n")
    assert cfg.refresh_interval == seconds


# --- bad files: one line, naming file, key and line ---------------------------------------

PEER = f"""\
plugins:
  x: {{type: exec, command: /bin/true}}
interfaces:
  wg0:
    peers:
      b:
        public_key: "{PUB_B}"
        plugin: x
"""

# (id, text, key, text on the line the message must name, words the reason must contain)
BAD_CONFIGS = [
    ("top-level-list", "- a\n- b\n", None, "- a", "must be a mapping"),
    ("section-not-mapping", "log: debug\n", "log", "log:", "must be a mapping"),
    ("interfaces-list", "interfaces: [wg0]\n", "interfaces", "interfaces", "not a list"),
    (
        "refresh-bare-number",
        PEER + "refresh_interval: 600\n",
        "refresh_interval",
        "600",
        '"600s"',
    ),
    ("refresh-bad-unit", PEER + "refresh_interval: 10x\n", "refresh_interval", "10x", "unit"),
    ("refresh-zero", PEER + "refresh_interval: 0s\n", "refresh_interval", "0s", "zero"),
    ("refresh-list", PEER + "refresh_interval: [1m]\n", "refresh_interval", "[1m]", "a list"),
    ("log-level", PEER + "log: {level: loud}\n", "log.level", "loud", "debug, info"),
    ("log-format", PEER + "log: {format: xml}\n", "log.format", "xml", "console, json"),
    ("stun-empty", PEER + "stun: {addresses: []}\n", "stun.addresses", "addresses", "no addr"),
    ("stun-empty-text", PEER + 'stun: {addresses: ""}\n', "stun.addresses", "addresses", "no addr"),
    (
        "stun-no-port",
        PEER + "stun:\n  addresses:\n    - ok.example:3478\n    - stun.example.net\n",
        "stun.addresses[1]",
        "stun.example.net",
        "host:port",
    ),
    (
        "retries-text",
        PEER + "ping_monitor: {fixed_retries: three}\n",
        "ping_monitor.fixed_retries",
        "three",
        "whole number",
    ),
    (
        "ping-monitor-negative",
        PEER + "ping_monitor: {interval: -1s}\n",
        "ping_monitor.interval",
        "-1s",
        "zero",
    ),
    (
        "ifname-too-long",
        PEER.replace("  wg0:", "  wireguard-tunnel0:"),
        "interfaces.wireguard-tunnel0",
        "wireguard-tunnel0",
        "interface name",
    ),
    (
        "iface-protocol",
        PEER.replace("  wg0:\n", "  wg0:\n    protocol: ipv5\n"),
        "interfaces.wg0.protocol",
        "ipv5",
        "ipv4, ipv6, dualstack",
    ),
    (
        "peer-protocol",
        PEER + "        protocol: dualstack\n",
        "interfaces.wg0.peers.b.protocol",
        "dualstack",
        "prefer_ipv4",
    ),
    (
        "plugin-type",
        PEER.replace("type: exec", "type: http"),
        "plugins.x.type",
        "type: http",
        "builtin, exec or shell",
    ),
    (
        "plugin-type-missing",
        PEER.replace("type: exec, ", ""),
        "plugins.x.type",
        "x: {",
        "required",
    ),
    (
        "exec-without-command",
        PEER.replace(", command: /bin/true", ""),
        "plugins.x.command",
        "x: {",
        "required",
    ),
    (
        "builtin-without-name",
        PEER.replace("type: exec, command: /bin/true", "type: builtin"),
        "plugins.x.name",
        "x: {",
        "required",
    ),
    (
        "builtin-unknown-name",
        PEER.replace("type: exec, command: /bin/true", "type: builtin, name: nosuchstore"),
        "plugins.x.name",
        "nosuchstore",
        "unknown built-in store",
    ),
    (
        "plugin-timeout-zero",
        PEER.replace("/bin/true", "/bin/true, timeout: 0s"),
        "plugins.x.timeout",
        "timeout",
        "zero",
    ),
    (
        "plugin-timeout-negative-number",
        PEER.replace("/bin/true", "/bin/true, timeout: -3"),
        "plugins.x.timeout",
        "timeout",
        "zero",
    ),
    (
        "args-mapping",
        PEER.replace("/bin/true", "/bin/true, args: {a: 1}"),
        "plugins.x.args",
        "args",
        "list",
    ),
    (
        "ping-enabled-text",
        PEER + "        ping: {enabled: sure, target: 198.19.0.1}\n",
        "interfaces.wg0.peers.b.ping.enabled",
        "ping:",
        "true or false",
    ),
    (
        "ping-interval-negative",
        PEER + "        ping: {interval: -5s}\n",
        "interfaces.wg0.peers.b.ping.interval",
        "ping:",
        "negative",
    ),
    (
        "duplicate-key",
        PEER + "        plugin: x\n",
        "interfaces.wg0.peers.b.plugin",
        "plugin: x",  # the first line naming it is the first occurrence...
        "twice",
    ),
    ("yaml-syntax", PEER + "log:\n  level: info\n format: json\n", None, "format", "YAML"),
    ("yaml-tab", PEER + "log:\n\tlevel: info\n", None, "\tlevel", "YAML"),
    ("yaml-two-documents", PEER + "---\nlog: {}\n", None, "---", "single document"),
]


@pytest.mark.parametrize(
    ("text", "key", "line_text", "reason"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_config_is_one_clear_line(
    tmp_path: Path, text: str, key: str | None, line_text: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    message = str(err)
    assert_one_line(message)
    assert message.startswith(str(path))
    assert err.path == str(path)
    assert err.key == key
    if key is not None:
        assert f": {key}: " in message
    expected_line = line_of(text, line_text)
    if key == "interfaces.wg0.peers.b.plugin" and reason == "twice":
        expected_line = len(text.splitlines())  # ...but the repeat is what is reported
    assert err.line == expected_line, message
    assert f"{path}:{expected_line}:" in message
    assert reason in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty"),
        ("# only a comment\n\n", "empty"),
        ("---\n", "empty"),
        ("just a string\n", "must be a mapping"),
        (b"log: {level: \xff}\n", "not UTF-8"),
        (b"log: {level: a\x00}\n", "not allowed"),
        ("[" * 10000, "nested deeper than 64 levels"),
    ],
    ids=["empty", "comments-only", "empty-document", "scalar", "not-utf8", "nul", "deep"],
)
def test_unusable_file_content(tmp_path: Path, content: str | bytes, reason: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_one_line(str(info.value))
    assert str(info.value).startswith(str(path))
    assert reason in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(path)
    assert info.value.path == str(path)
    assert_one_line(str(info.value))


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory") as info:
        load_config(tmp_path)
    assert info.value.path == str(tmp_path)


def test_oversized_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "#" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_utf8_bom_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path).interfaces["wg0"].peers["b"].plugin == "dht"


# --- secrets --------------------------------------------------------------------------------


def in_plugins(entry: str) -> str:
    return PEER.replace("plugins:\n", "plugins:\n" + entry)


@pytest.mark.parametrize(
    "text",
    [
        # a YAML error on the token's line: PyYAML's snippet would show it
        in_plugins(f'  cf: {{type: builtin, name: cloudflare, token: "{SECRET}\n'),
        in_plugins(f'  cf:\n    type: builtin\n    token: "{SECRET}"\n'),
        in_plugins(f"  cf: {{type: builtin, name: cloudflare, token: !!binary {SECRET}}}\n"),
        PEER.replace("/bin/true", f'/bin/true, args: ["--token", "{SECRET}", [1]]'),
    ],
    ids=["syntax", "later-error", "bad-option", "bad-args"],
)
def test_errors_never_show_secrets(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert SECRET not in str(info.value)
    assert base64.b64encode(SECRET.encode()).decode() not in str(info.value)


@pytest.mark.parametrize(
    "key_text",
    [SECRET, base64.b64encode(SECRET.encode()).decode()],
    ids=["bad-key-text", "bad-key-length"],
)
def test_disabled_peer_never_shows_its_key_text(tmp_path: Path, key_text: str) -> None:
    """A private key pasted into public_key disables the peer; neither the warning nor the
    reason (which goes to the bus) repeats it."""
    cfg = load_config(write(tmp_path, PEER.replace(PUB_B, key_text)))
    (disabled,) = cfg.interfaces["wg0"].disabled.values()
    assert key_text not in disabled.reason
    assert key_text not in " ".join(cfg.warnings) + " ".join(cfg.disabled_peers())
    assert SECRET not in repr(cfg)


def test_repr_never_shows_store_options(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.plugins["cf"].options["token"] == SECRET
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert SECRET not in " ".join(cfg.warnings)


# --- warnings ------------------------------------------------------------------------------


def test_unknown_keys_warn_with_file_key_and_line(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("    peers:", "    mtu: 1420\n    peers:")
        + "refresh_intervall: 5m\n"
        + "log: {level: info, colour: true}\n"
        + "ping_monitor: {retries: 3}\n"
    )
    text = text.replace("        plugin: dht\n", '        plugin: dht\n        endpoint: "x:1"\n')
    path = write(tmp_path, text)
    cfg = load_config(path)
    expected = {
        "interfaces.wg0.mtu": "mtu:",
        "refresh_intervall": "refresh_intervall",
        "log.colour": "colour",
        "ping_monitor.retries": "retries",
        "interfaces.wg0.peers.b.endpoint": "endpoint:",
    }
    assert len(cfg.warnings) == len(expected), cfg.warnings
    for key, needle in expected.items():
        (warning,) = [w for w in cfg.warnings if f": {key}: " in w]
        assert warning.startswith(f"{path}:{line_of(text, needle)}: {key}: unknown key")
        assert_one_line(warning)
    assert any("did you mean refresh_interval?" in w for w in cfg.warnings)
    assert cfg.refresh_interval == 600.0  # the misspelt key did not count


@pytest.mark.parametrize(
    "entry",
    [
        "proxy: {enabled: true, listen: 51820}",
        "listen_interfaces: [eth0]",
        "listen_default_route: true",
    ],
)
def test_linux_noop_keys_are_accepted_with_a_warning(tmp_path: Path, entry: str) -> None:
    text = MINIMAL.replace("    peers:", f"    {entry}\n    peers:")
    path = write(tmp_path, text)
    cfg = load_config(path)
    key = "interfaces.wg0." + entry.split(":")[0]
    (warning,) = cfg.warnings
    assert warning.startswith(f"{path}:{line_of(text, entry)}: {key}: ")
    assert "nothing on Linux" in warning
    assert "wg0" in cfg.interfaces


def test_plugin_keys_that_do_not_apply_warn(tmp_path: Path) -> None:
    text = PEER.replace("/bin/true", "/bin/true, name: cloudflare, zone: example.com")
    cf = "  cf: {type: builtin, name: cloudflare, command: /bin/true, token: t, zone: z}\n"
    text = text.replace("plugins:\n", "plugins:\n" + cf)
    cfg = load_config(write(tmp_path, text))
    keys = sorted(w.split(": ")[1] for w in cfg.warnings if ": plugins." in w)
    assert keys == ["plugins.cf.command", "plugins.x.name", "plugins.x.zone"]
    assert cfg.plugins["x"].options == {"zone": "example.com"}


def test_dedup_on_opendht_warns(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "    dedup: true\n"))
    assert any("plugins.dht.dedup" in w and "expire" in w for w in cfg.warnings)


def test_dedup_accepts_stunmesh_go_strings(tmp_path: Path) -> None:
    text = PEER.replace("/bin/true}", '/bin/true, dedup: "1"}')
    assert load_config(write(tmp_path, text)).plugins["x"].dedup is True


def test_zerolog_levels_are_mapped_with_a_warning(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + "log: {level: trace}\n"))
    assert cfg.log.level == "debug"
    assert any("log.level" in w and "trace" in w for w in cfg.warnings)


def test_no_peers_and_no_interfaces_warn(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "stun: {addresses: ['198.51.100.1:3478']}\ninterfaces:\n"))
    assert any(": interfaces: no interfaces" in w for w in cfg.warnings)
    cfg = load_config(
        write(tmp_path, "stun: {addresses: ['198.51.100.1:3478']}\ninterfaces: {wg0: }\n")
    )
    assert cfg.interfaces["wg0"].peers == {}
    assert any("interfaces.wg0: has no peers" in w for w in cfg.warnings)


# --- STUN servers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stun", "servers", "warns"),
    [
        ("", (DEFAULT_STUN_SERVER,), "no STUN server"),
        ("stun:\n", (DEFAULT_STUN_SERVER,), "no STUN server"),
        ("stun: {addresses: }\n", (DEFAULT_STUN_SERVER,), "no STUN server"),
        ("stun: {address: 'a.example:1'}\n", ("a.example:1",), "deprecated"),
        ("stun: {address: 'a.example:1', addresses: []}\n", ("a.example:1",), "deprecated"),
        (
            "stun: {address: 'b.example:2', addresses: [a.example:1, b.example:2, a.example:1]}\n",
            ("b.example:2", "a.example:1"),
            "deprecated",
        ),
        ("stun: {address: '', addresses: ['[2001:db8::1]:3478']}\n", ("[2001:db8::1]:3478",), None),
    ],
)
def test_stun_address_merges_into_addresses(
    tmp_path: Path, stun: str, servers: tuple[str, ...], warns: str | None
) -> None:
    cfg = load_config(write(tmp_path, PEER + stun))
    assert cfg.stun_servers == servers
    if warns is None:
        assert cfg.warnings == ()
    else:
        (warning,) = cfg.warnings
        assert warns in warning and "stun.address" in warning


@pytest.mark.parametrize(
    "address",
    ["2001:db8::1:3478", "[2001:db8::zz]:3478", "a.example:0", "a.example:65536", ":3478"],
)
def test_bad_stun_addresses(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, PEER + f"stun: {{addresses: ['{address}']}}\n"))
    assert info.value.key == "stun.addresses[0]"


# --- search order ---------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[Path]]:
    """Stand-ins for the five search places, /etc replaced by temp dirs."""
    etc_stunmeshd = tmp_path / "etc-stunmeshd"
    env_dir = tmp_path / "env"
    etc_stunmesh = tmp_path / "etc-stunmesh"
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    dirs = [etc_stunmeshd, env_dir, etc_stunmesh, home / ".stunmesh", cwd]
    for d in dirs:
        d.mkdir(parents=True)
    monkeypatch.setenv("STUNMESH_CONFIG_DIR", str(env_dir))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    search = [str(etc_stunmeshd), "$STUNMESH_CONFIG_DIR", str(etc_stunmesh), "$HOME/.stunmesh", "."]
    return search, dirs


def test_search_dirs_constant_is_the_documented_order() -> None:
    assert SEARCH_DIRS == (
        "/etc/stunmeshd",
        "$STUNMESH_CONFIG_DIR",
        "/etc/stunmesh",
        "$HOME/.stunmesh",
        ".",
    )


def test_search_order(places: tuple[list[str], list[Path]]) -> None:
    search, dirs = places
    files = []
    for d in dirs:
        for name in ("config.yaml", "config.yml"):
            (d / name).write_text(MINIMAL)
            files.append(d / name)
    for expected in files:  # each place, config.yaml before config.yml
        assert find_config(search_dirs=search) == str(expected)
        expected.unlink()
    with pytest.raises(ConfigError) as info:
        find_config(search_dirs=search)
    message = str(info.value)
    assert_one_line(message)
    assert all(str(f) in message for f in files)
    assert "-c FILE" in message


def test_search_uses_module_constant(
    places: tuple[list[str], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    search, dirs = places
    monkeypatch.setattr(config_module, "SEARCH_DIRS", tuple(search))
    (dirs[3] / "config.yml").write_text(MINIMAL)
    (dirs[4] / "config.yaml").write_text(MINIMAL)
    cfg = load_config()
    assert cfg.source == str(dirs[3] / "config.yml")


def test_unset_variables_are_skipped(
    places: tuple[list[str], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    search, dirs = places
    monkeypatch.delenv("STUNMESH_CONFIG_DIR")
    monkeypatch.setenv("HOME", "")
    with pytest.raises(ConfigError) as info:
        find_config(search_dirs=search)
    message = str(info.value)
    assert "$" not in message and "/.stunmesh" not in message
    assert str(dirs[0] / "config.yaml") in message and str(dirs[4] / "config.yml") in message


def test_unreadable_search_dir_is_passed_over(places: tuple[list[str], list[Path]]) -> None:
    search, dirs = places
    (dirs[4] / "config.yaml").write_text(MINIMAL)
    search = ["/proc/1/root/nonexistent-dir", *search]
    assert find_config(search_dirs=search) == str(dirs[4] / "config.yaml")


def test_config_dir(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(MINIMAL)
    assert find_config(tmp_path) == str(tmp_path / "config.yml")
    (tmp_path / "config.yaml").write_text(MINIMAL.replace("wg0", "wg1"))
    cfg = load_config(config_dir=tmp_path)
    assert cfg.source == str(tmp_path / "config.yaml") and "wg1" in cfg.interfaces


def test_config_dir_must_hold_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.yaml or config\.yml") as info:
        load_config(config_dir=tmp_path)
    assert info.value.path == str(tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        load_config(config_dir=tmp_path / "missing")


def test_explicit_file_beats_config_dir(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("bad: [")
    other = write(tmp_path, MINIMAL, "other.yaml")
    assert load_config(other, config_dir=tmp_path).source == str(other)


# --- small public helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ("debug", "debug"),
        ("INFO", "info"),
        ("warn", "warning"),
        ("Warning", "warning"),
        ("error", "error"),
        ("trace", "debug"),
        ("panic", "error"),
    ],
)
def test_normalize_log_level(given: str, level: str) -> None:
    assert normalize_log_level(given) == level


def test_normalize_log_level_refuses_others() -> None:
    with pytest.raises(ValueError, match="debug, info, warn, warning, error"):
        normalize_log_level("verbose")


def test_builtin_store_names_come_from_the_registry(tmp_path: Path) -> None:
    for name in ("cloudflare", "opendht"):
        text = PEER.replace("type: exec, command: /bin/true", f"type: builtin, name: {name}")
        assert load_config(write(tmp_path, text)).plugins["x"].builtin == name


def test_locate_key(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    assert locate_key(path, "plugins", "cf", "token") == line_of(FULL, "token:")
    assert locate_key(path, "plugins", "cf", "nothing") == line_of(FULL, "  cf:")
    assert locate_key(tmp_path / "missing.yaml", "plugins") is None


def test_parse_config_names_its_source() -> None:
    cfg = parse_config(MINIMAL, source="<bus>")
    assert cfg.source is None
    with pytest.raises(ConfigError) as info:
        parse_config("log: 1\n", source="<bus>")
    assert str(info.value).startswith("<bus>:1: log: ")
