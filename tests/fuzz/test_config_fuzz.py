"""Fuzzing the configuration loader: whatever the file holds, loading returns a Config or
raises one ConfigError of one line naming the file — never another exception, never a secret
in a message; and everything it accepts keeps the schema's promises."""

from __future__ import annotations

import base64
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from stunmeshd.config import Config, parse_config
from stunmeshd.errors import ConfigError

SECRET = "S3CR3T-fuzz-token-never-echoed"
KEY = base64.b64encode(bytes(range(32))).decode()

# Every key the schema knows, so generated documents reach deep into the parser.
VOCABULARY = [
    "refresh_interval", "log", "level", "format", "stun", "address", "addresses",
    "ping_monitor", "interval", "timeout", "fixed_retries", "interfaces", "wg0", "wg1",
    "protocol", "peers", "b", "c", "public_key", "plugin", "description", "ping", "enabled",
    "target", "plugins", "p", "type", "name", "command", "args", "dedup", "proxy", "listen",
    "fib", "listen_interfaces", "listen_default_route", "endpoint", "token", "<<",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**60), 10**60),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "5", "true", "yes", "1", "ipv4", "dualstack", "exec", "builtin", "opendht",
            "/bin/true", "10s", "1h", "600", "a.example:3478", "a:1,b:2", KEY, KEY[:-1],
            "198.51.100.1", "router.lan", "\ud800", "\0", "x" * 300,
        ]
    ),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(VOCABULARY), inner, max_size=6)
    ),
    max_leaves=40,
)


def valid_base() -> dict[str, Any]:
    return {
        "stun": {"addresses": ["198.51.100.1:3478"]},
        "plugins": {"p": {"type": "exec", "command": "/bin/true"}},
        "interfaces": {"wg0": {"peers": {"b": {"public_key": KEY, "plugin": "p"}}}},
    }


def dump(document: Any) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=False)
    except (yaml.YAMLError, UnicodeEncodeError):
        return yaml.safe_dump(repr(document))


def load(text: str) -> Config | ConfigError:
    try:
        return parse_config(text, source="fuzz.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert message.splitlines() == [message], message
        assert message.startswith("fuzz.yaml")
        assert "Traceback" not in message
        return exc


def check_accepted(cfg: Config) -> None:
    """What a loaded Config promises every other module."""
    assert cfg.stun_servers and cfg.refresh_interval > 0
    assert cfg.log.level in ("debug", "info", "warning", "error")
    for warning in cfg.warnings:
        assert warning.splitlines() == [warning]
    for iface in cfg.interfaces.values():
        assert 1 <= len(iface.name.encode()) <= 15
        keys = [peer.public_key for peer in iface.peers.values()]
        assert all(len(key) == 32 for key in keys) and len(set(keys)) == len(keys)
        assert all(peer.plugin in cfg.plugins for peer in iface.peers.values())
        assert all(d.reason and "\n" not in d.reason for d in iface.disabled.values())
        assert not set(iface.peers) & set(iface.disabled)


@given(st.text(max_size=400))
def test_any_text(text: str) -> None:
    result = load(text)
    if isinstance(result, Config):
        check_accepted(result)


@given(documents)
def test_any_structure(document: Any) -> None:
    result = load(dump(document))
    if isinstance(result, Config):
        check_accepted(result)


@given(
    st.sampled_from(["interfaces", "plugins", "stun", "log", "ping_monitor"]),
    documents,
    st.sampled_from(["peer", "plugin", "top"]),
)
def test_a_valid_file_with_one_part_replaced(section: str, value: Any, where: str) -> None:
    config = valid_base()
    if where == "peer":
        config["interfaces"]["wg0"]["peers"]["b"][section] = value
    elif where == "plugin":
        config["plugins"]["p"][section] = value
    else:
        config[section] = value
    result = load(dump(config))
    if isinstance(result, Config):
        check_accepted(result)


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.booleans(),
    st.integers(0, 300),
    st.sampled_from(["[", "{a: ", "- "]),
)
def test_aliases_merges_and_nesting(
    levels: int, width: int, merge: bool, depth: int, opener: str
) -> None:
    """Billion-laughs shapes of every size, and nesting of every depth: bounded, one line."""
    lines = ["a0: &a0 {x: 1}" if merge else "a0: &a0 [x]"]
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} {{<<: [{refs}]}}" if merge else f"a{i}: &a{i} [{refs}]")
    nested = "n: " + opener * depth + ("1" if opener == "- " else "")
    load("\n".join([*lines, nested]) + "\n")


@given(documents, st.sampled_from(["public_key", "token"]))
def test_secrets_never_in_messages(document: Any, where: str) -> None:
    """A token, or a private key pasted as public_key, is never repeated in an error,
    a warning or a disabled peer's reason, whatever surrounds it."""
    config = valid_base()
    config["plugins"]["cf"] = {"type": "builtin", "name": "cloudflare", "zone": "example.com"}
    if where == "public_key":
        config["interfaces"]["wg0"]["peers"]["c"] = {"public_key": SECRET, "plugin": "p"}
    elif where == "token":
        config["plugins"]["cf"]["token"] = SECRET
    config["x"] = document
    result = load(dump(config))
    if isinstance(result, ConfigError):
        assert SECRET not in str(result)
    else:
        assert SECRET not in " ".join(result.warnings)
        assert SECRET not in " ".join(result.disabled_peers())
        assert SECRET not in repr(result)


peer_protocols = st.sampled_from(["ipv4", "ipv6", "prefer_ipv4", "prefer_ipv6"])
peer_fields = st.fixed_dictionaries(
    {},
    optional={
        "protocol": peer_protocols,
        "plugin": st.just("lab"),
        "description": st.sampled_from(["a", "'b c'", '"5"']),
        "ping": st.sampled_from(["{}", "{enabled: false}", "{interval: 2s}"]),
    },
)


@given(
    peer_fields,
    peer_fields,
    st.sampled_from(["ipv4", "ipv6", "dualstack"]),
    st.sampled_from(["", "ipv4", "ipv6", "dualstack"]),
    st.integers(1, 3),
)
def test_merge_keys_and_aliases_in_schema_places(
    shared: dict[str, str], own: dict[str, str], shared_if: str, own_if: str, uses: int
) -> None:
    """Valid defaults shared through an anchor and ``<<``, overridden per peer and per
    interface, the same anchors used several times: the file loads and overrides win."""
    shared = {"plugin": "lab", **shared}
    overrides = "".join(f", {k}: {v}" for k, v in own.items())
    keys = [base64.b64encode(bytes([i]) * 32).decode() for i in range(uses)]
    peers = "".join(
        f"      p{i}: {{<<: *shared, public_key: {key!r}{overrides}}}\n"
        for i, key in enumerate(keys)
    )
    iface_override = f"    protocol: {own_if}\n" if own_if else ""
    text = (
        "x-shared: &shared {" + ", ".join(f"{k}: {v}" for k, v in shared.items()) + "}\n"
        f"x-iface: &iface {{protocol: {shared_if}, peers: {{}}}}\n"
        'stun: {addresses: ["198.51.100.1:3478"]}\n'
        "plugins: {lab: {type: exec, command: /bin/true}}\n"
        "interfaces:\n  wg0:\n    <<: *iface\n" + iface_override + "    peers:\n" + peers
        + "  wg1: *iface\n"
    )  # fmt: skip
    result = load(text)
    assert isinstance(result, Config), result
    check_accepted(result)
    assert result.interfaces["wg0"].protocol == (own_if or shared_if)
    assert result.interfaces["wg1"].protocol == shared_if
    expected = own.get("protocol") or shared.get("protocol") or "ipv4"
    assert len(result.interfaces["wg0"].peers) == uses
    assert {p.protocol for p in result.interfaces["wg0"].peers.values()} == {expected}
