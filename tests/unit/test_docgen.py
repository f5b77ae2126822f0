"""Man pages and shell completions, generated from the parsers and the config key list: they
render without warnings, they say what --help says, they document every config key the loader
knows (and only those), and the completion scripts load and complete in bash, zsh and fish."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stunmeshd import config as config_module
from stunmeshd.config import parse_config
from stunmeshd.ctl.cli import build_parser as ctl_parser
from stunmeshd.daemon import build_parser as daemon_parser
from stunmeshd.docgen.completion import scripts
from stunmeshd.docgen.conf_keys import KEYS
from stunmeshd.docgen.roff import PAGES
from stunmeshd.stores import cloudflare, opendht
from tests.prereq import require_tools

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def share() -> Path:
    """The committed, installed files (share/ in the repository)."""
    return REPO / "share"


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    """share/ cannot drift from the parsers and the key list: `make docs` regenerates it."""
    subprocess.run(
        [sys.executable, "-m", "stunmeshd.docgen", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(REPO / "share"): p.read_text()
        for p in (REPO / "share").rglob("*")
        if p.is_file()
    }
    assert committed.keys() == generated.keys()
    stale = [str(rel) for rel, text in generated.items() if committed[rel] != text]
    assert not stale, f"stale (run `make docs`): {stale}"


def render(path: Path) -> tuple[str, str]:
    """(text, warnings) of ``man -l`` with every groff warning on."""
    require_tools("man", "groff")
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    return re.sub(".\b", "", proc.stdout), proc.stderr  # no overstrike (bold, underline)


def test_man_catches_warnings_at_all(tmp_path: Path) -> None:
    """The check below can fail: a page with an undefined macro does warn."""
    bad = tmp_path / "bad.1"
    bad.write_text(".TH BAD 1\n.SH NAME\nbad \\- page\n.XQ undefined macro\n")
    assert "XQ" in render(bad)[1]


@pytest.mark.parametrize("rel", sorted(PAGES))
def test_pages_render_without_warnings(share: Path, rel: str) -> None:
    text, warnings = render(share / "man" / rel)
    assert warnings == ""
    assert "NAME" in text and "SEE ALSO" in text


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found = {o for a in parser._actions for o in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found - {"-h", "--help"}


def plain(text: str) -> str:
    return text.replace("\u2010", "-").replace("\u2011", "-")


def test_man_pages_say_what_help_says(share: Path) -> None:
    ctl_text = plain(render(share / "man/man1/stunmeshctl.1")[0])
    for option in option_strings(ctl_parser()):
        assert option in ctl_text, option
    for command in ("status", "devices", "peers", "show", "refresh", "reload", "log-level",
                    "permissions", "monitor"):  # fmt: skip
        assert f"\n       {command}" in ctl_text, command
    assert "_complete" not in ctl_text  # the hidden command stays hidden
    for status in range(6):
        assert f"\n       {status}" in ctl_text
    daemon_text = plain(render(share / "man/man8/stunmeshd.8")[0])
    for option in option_strings(daemon_parser()):
        assert option in daemon_text, option
    assert "SIGHUP" in daemon_text and "/etc/stunmesh/config.yaml" in daemon_text


def test_conf_page_lists_every_key(share: Path) -> None:
    text = plain(render(share / "man/man5/stunmeshd.conf.5")[0])
    for key in KEYS:
        assert key.path in text.replace("\n", " "), key.path
    assert "stunmesh-go:" in text


# ---- the key list against the loader, both ways ------------------------------------------

EVERY_KEY = """
refresh_interval: 5m
log: {level: info, format: json}
stun: {address: "198.51.100.1:3478", addresses: ["203.0.113.1:3478"]}
ping_monitor: {interval: 1s, timeout: 1s, fixed_retries: 3}
interfaces:
  wg0:
    protocol: ipv4
    port_mapping: auto
    port_mapping_lifetime: 2h
    proxy: {}
    listen_interfaces: [eth0]
    listen_default_route: false
    peers:
      office:
        public_key: "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
        plugin: cf
        protocol: ipv4
        description: office
        ping: {enabled: true, target: 198.19.0.1, interval: 2s, timeout: 1s}
plugins:
  cf: {type: builtin, name: cloudflare, zone: example.com, token: t, subdomain: wg,
       api_base: "https://api.cloudflare.com/client/v4", dedup: true, timeout: 10s}
  dht: {type: builtin, name: opendht, endpoint: "http://198.51.100.1:8080",
        endpoints: ["http://198.51.100.1:8081"], magic: stunmesh-v1, timeout: 10s}
  prog: {type: exec, command: /bin/true, args: [x]}
"""


def documented_paths() -> set[str]:
    return {k.path for k in KEYS}


def yaml_paths() -> set[str]:
    """The dotted key paths in EVERY_KEY, names replaced by their <placeholders>."""
    import yaml

    def walk(node: object, prefix: str) -> set[str]:
        if not isinstance(node, dict):
            return {prefix}
        out: set[str] = set()
        for key, value in node.items():
            if prefix in ("interfaces",):
                key = "<ifname>"
            elif prefix.endswith(".peers"):
                key = "<label>"
            elif prefix == "plugins":
                key = "<name>"
            path = f"{prefix}.{key}" if prefix else str(key)
            leaf = path in documented_paths() and not path.endswith(".ping")
            out |= {path} if leaf or not isinstance(value, dict) else walk(value, path)
        return out

    return walk(yaml.safe_load(EVERY_KEY), "")


def test_every_documented_key_loads_without_an_unknown_key_warning() -> None:
    assert yaml_paths() == documented_paths()  # the sample uses each documented key
    loaded = parse_config(EVERY_KEY, source="every-key.yaml")
    unknown = [w for w in loaded.warnings if "unknown" in w or "not used" in w]
    assert unknown == []


def test_an_undocumented_key_is_warned_about() -> None:
    """The check above can fail: the loader does warn about a key it does not know."""
    loaded = parse_config(EVERY_KEY + "frobnicate: 1\n", source="x.yaml")
    assert any("frobnicate" in w and "unknown" in w for w in loaded.warnings)


def test_every_key_the_loader_knows_is_documented() -> None:
    doc = documented_paths()
    loader: set[str] = set(config_module._TOP_KEYS)
    loader |= {f"log.{f.name}" for f in dataclasses.fields(config_module.LogConfig)}
    loader |= {
        f"ping_monitor.{f.name}" for f in dataclasses.fields(config_module.PingMonitorConfig)
    }
    loader |= {"stun.address", "stun.addresses"}
    iface = "interfaces.<ifname>"
    loader |= {f"{iface}.{k}" for k in config_module._LINUX_NOOP_KEYS} | {f"{iface}.protocol"}
    loader |= {f"{iface}.{k}" for k in config_module._PORT_MAPPING_KEYS}
    peer = f"{iface}.peers.<label>"
    loader |= {f"{peer}.{k}" for k in config_module._PEER_KEYS if k != "ping"}
    loader |= {f"{peer}.ping.{k}" for k in config_module._PING_KEYS}
    loader |= {f"plugins.<name>.{k}" for k in config_module.GENERIC_PLUGIN_KEYS}
    loader |= {f"plugins.<name>.{k}" for k in cloudflare.OPTIONS | opendht.OPTIONS}
    tops = {"log", "stun", "ping_monitor", "interfaces", "plugins"}
    assert loader - tops == doc


# ---- completions -------------------------------------------------------------------------


def bash_complete(share: Path, line: str, env: dict[str, str] | None = None) -> list[str]:
    script = share / "bash-completion/completions/stunmeshctl"
    code = (
        f"source {script}; COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; "
        'read -ra COMP_WORDS <<< "$COMP_LINE"; '
        '[[ $COMP_LINE == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); '
        '_stunmeshctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(
        ["bash", "--norc", "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, **(env or {})},
    ).stdout  # fmt: skip
    return [w for w in out.splitlines() if w]


def test_bash_completes_commands_options_and_choices(share: Path) -> None:
    assert bash_complete(share, "stunmeshctl sh") == ["show"]
    assert set(bash_complete(share, "stunmeshctl ")) >= {"status", "refresh", "--bus", "--json"}
    assert "_complete" not in bash_complete(share, "stunmeshctl ")
    assert bash_complete(share, "stunmeshctl log-level d") == ["debug"]
    assert set(bash_complete(share, "stunmeshctl refresh --")) == {"--json", "--wait", "--timeout"}
    assert bash_complete(share, "stunmeshctl --bus s") == ["system", "session"]
    daemon = share / "bash-completion/completions/stunmeshd"
    out = subprocess.run(
        ["bash", "--norc", "-c", f"source {daemon}; complete -p stunmeshd"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "_stunmeshd" in out


def test_fish_loads_and_completes(share: Path) -> None:
    require_tools("fish")  # `make deps` installs it
    script = share / "fish/vendor_completions.d/stunmeshctl.fish"
    out = subprocess.run(
        ["fish", "--no-config", "-c",
         f"source {script}; complete -C 'stunmeshctl sh'; complete -C 'stunmeshctl log-level '"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    words = [line.split("\t")[0] for line in out.splitlines()]
    assert "show" in words and {"debug", "info", "warning", "error"} <= set(words)
    assert "_complete" not in words


def test_zsh_registers_both_completions(share: Path, tmp_path: Path) -> None:
    require_tools("zsh")
    fpath = share / "zsh/vendor-completions"
    out = subprocess.run(
        ["zsh", "-f", "-c",
         f"fpath=({fpath} $fpath); autoload -Uz compinit; compinit -u -d {tmp_path}/dump; "
         "print -r -- $_comps[stunmeshctl] $_comps[stunmeshd]; "
         "autoload -Uz +X _stunmeshctl _stunmeshd && print loaded"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["_stunmeshctl", "_stunmeshd", "loaded"], out


def test_scripts_cover_both_commands_in_three_shells() -> None:
    assert sorted(scripts()) == sorted(
        f"{d}{p}{s}"
        for p in ("stunmeshctl", "stunmeshd")
        for d, s in (
            ("bash-completion/completions/", ""),
            ("zsh/vendor-completions/_", ""),
            ("fish/vendor_completions.d/", ".fish"),
        )
    )
