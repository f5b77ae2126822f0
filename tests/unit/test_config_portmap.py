"""The stunmeshd-only port-mapping keys: their defaults, their values, --check's verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stunmeshd.config import parse_config
from stunmeshd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PUB_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="


def config_text(extra: str = "") -> str:
    return f"""\
stun:
  addresses: ["198.51.100.1:3478"]
interfaces:
  wg0:
{extra}    peers:
      b:
        public_key: "{PUB_B}"
        plugin: prog
plugins:
  prog:
    type: exec
    command: /bin/true
"""


def test_defaults_are_auto_and_two_hours() -> None:
    iface = parse_config(config_text(), source="c.yaml").interfaces["wg0"]
    assert (iface.port_mapping, iface.port_mapping_lifetime) == ("auto", 7200.0)


@pytest.mark.parametrize("mode", ["auto", "off", "pcp", "natpmp", "upnp"])
def test_each_mode_is_read(mode: str) -> None:
    text = config_text(f"    port_mapping: {mode}\n    port_mapping_lifetime: 10m\n")
    iface = parse_config(text, source="c.yaml").interfaces["wg0"]
    assert (iface.port_mapping, iface.port_mapping_lifetime) == (mode, 600.0)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("    port_mapping: igd\n", "port_mapping: must be one of auto, off, pcp, natpmp, upnp"),
        ("    port_mapping: [pcp]\n", "port_mapping"),
        ("    port_mapping_lifetime: 1s\n", "between 2s and 86400s"),
        ("    port_mapping_lifetime: 2d\n", "port_mapping_lifetime"),
        ("    port_mapping_lifetime: 600\n", "a bare number is not a duration"),
    ],
)
def test_bad_values_name_file_key_and_line(extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config_text(extra), source="c.yaml")
    message = str(info.value)
    assert needle in message and message.startswith("c.yaml:5: interfaces.wg0.port_mapping")


def test_check_validates_them(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(config_text("    port_mapping: natpmp\n"))
    bad.write_text(config_text("    port_mapping: upnp2\n"))

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stunmeshd", "--check", "--config", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert check(good).returncode == 0
    refused = check(bad)
    assert refused.returncode != 0
    assert "interfaces.wg0.port_mapping" in refused.stderr and "upnp2" in refused.stderr
