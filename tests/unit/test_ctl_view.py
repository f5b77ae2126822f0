"""stunmeshctl without a daemon: views, JSON, target resolution, error wording, exit statuses.

The same code against a real daemon on a private bus is in tests/bus/test_ctl_daemon.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stunmeshd.bus.names import DEVICE_IFACE, PEER_IFACE
from stunmeshd.ctl import client, view
from stunmeshd.ctl.cli import main, resolve_target
from stunmeshd.ctl.client import CtlError

DEV = "/io/github/stunmeshd/StunMesh1/Devices/1"
PEER = "/io/github/stunmeshd/StunMesh1/Peers/1"
KEY_A = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="
KEY_B = "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="
NOW = 1_780_000_000.0  # a fixed "now" in seconds


def snapshot() -> view.Snapshot:
    return view.Snapshot(
        manager={
            "Version": "0.1.0",
            "State": 2,
            "StunServers": ["198.51.100.1:3478"],
            "RefreshInterval": 300_000_000,
            "Devices": [DEV],
            "LogLevel": "info",
        },
        devices={
            DEV: {
                "Interface": "wg0",
                "Ifindex": 7,
                "Backend": "wireguard-go",
                "State": 4,
                "PublicEndpoints": ["198.51.100.10:40000"],
                "NatMapping": "endpoint-independent",
                "Peers": [PEER],
                "PublicKey": KEY_B,
                "ListenPort": 51820,
                "FwMark": 0x51820,
                "Protocol": "ipv4",
                "LastRefresh": int((NOW - 12) * 1_000_000),
                "NextRefresh": int((NOW + 288) * 1_000_000),
                "LastError": "",
            }
        },
        peers={
            PEER: {
                "Device": DEV,
                "Name": "office",
                "Description": "the office router, behind a carrier-grade NAT",
                "State": 5,
                "Endpoint": "203.0.113.20:51820",
                "DiscoveredEndpoint": "203.0.113.20:51820",
                "PublicKey": KEY_A,
                "LatestHandshake": 0,
                "LastUpdate": int((NOW - 30) * 1_000_000),
                "RxBytes": 2048,
                "TxBytes": 10,
                "Store": "dht",
                "LastError": "no handshake 15 s after applying the endpoint: the peer may be "
                "behind a NAT with an address-dependent mapping or a firewall",
            },
        },
    )


def test_status_reads_like_a_summary() -> None:
    assert view.render_status(snapshot()).splitlines() == [
        "stunmeshd 0.1.0: running",
        "STUN servers: 198.51.100.1:3478",
        "refresh interval: 5m",
        "wg0: ready, 198.51.100.10:40000, NAT endpoint-independent, 0/1 peers connected",
    ]


def test_tables_fit_the_terminal_and_shorten_keys() -> None:
    for width in (80, 100, 120):
        for text in (
            view.render_peers(snapshot(), None, width),
            view.render_devices(snapshot(), width),
        ):
            assert all(len(line) <= width for line in text.splitlines()), (width, text)
            assert "wg0" in text
    assert "203.0.113.20:51820" in view.render_peers(snapshot(), None, 200)
    narrow = view.table(["A", "KEY"], [["x", KEY_B]], shrink=(1,), width=20)
    assert narrow.splitlines()[1].endswith("…") and len(narrow.splitlines()[1]) <= 20
    assert view.short_key(KEY_B) == "zo060cy2M+x…"


def fields(block: str) -> dict[str, str]:
    """``Label: value`` lines of a show block."""
    out = {}
    for line in block.splitlines()[1:]:
        label, _, value = line.strip().partition(": ")
        out[label] = value
    return out


def test_device_detail_has_full_key_fwmark_backend_next_refresh_and_nat() -> None:
    block = view.render_device(snapshot(), DEV, now=NOW)
    assert block.splitlines()[0] == "● wg0"
    got = fields(block)
    assert got["Public key"] == KEY_B  # in full
    assert got["FwMark"] == "0x51820" and got["Backend"] == "wireguard-go"
    assert got["Next refresh"].endswith("(in 5m)") and got["Last refresh"].endswith("12s ago)")
    assert got["NAT mapping"].startswith("endpoint-independent (")
    assert got["Peers"] == "office (failed)" and got["Last error"] == "none"


def test_peer_detail_has_description_and_the_whole_error() -> None:
    block = view.render_peer(snapshot(), PEER, now=NOW)
    assert block.splitlines()[0] == "● wg0/office"
    got = fields(block)
    assert got["Description"] == "the office router, behind a carrier-grade NAT"
    assert got["Last error"] == snapshot().peers[PEER]["LastError"]  # not cut
    assert got["Public key"] == KEY_A and got["Handshake"] == "never"
    assert got["Transfer"] == "2.0 KiB received, 10 B sent"


def test_json_names_states_and_rfc3339_times() -> None:
    data = snapshot().to_json()
    json.dumps(data)  # serialisable as is
    (dev,) = data["devices"]
    assert dev["interface"] == "wg0" and dev["state"] == "ready" and dev["state_code"] == 4
    assert dev["peers"] == ["wg0/office"] and dev["object_path"] == DEV
    assert dev["fwmark"] == 0x51820 and dev["public_key"] == KEY_B
    assert dev["last_refresh"] == "2026-05-28T20:26:28.000Z"
    (peer,) = data["peers"]
    assert peer["interface"] == "wg0" and peer["name"] == "office"
    assert peer["peer"] == "wg0/office" and peer["state"] == "failed"
    assert peer["latest_handshake"] is None  # never
    assert peer["description"].startswith("the office router")
    assert data["manager"]["devices"] == ["wg0"] and data["manager"]["state"] == "running"
    assert data["manager"]["refresh_interval_s"] == 300 and data["manager"]["log_level"] == "info"
    # no CamelCase key and no bare object path anywhere but under object_path
    for obj in (dev, peer, data["manager"]):
        assert all(k == k.lower() for k in obj), obj
        for key, value in obj.items():
            if key != "object_path":
                assert "/io/github" not in json.dumps(value), (key, value)


def test_rfc3339_and_human_times() -> None:
    assert view.rfc3339(0) is None
    assert view.rfc3339(1_700_000_000_123_456) == "2023-11-14T22:13:20.123Z"
    assert view.when(0) == "never"
    assert view.ago((NOW - 3600) * 1_000_000, NOW) == "60m ago"


def test_targets_resolve_and_unknown_names_exit_5() -> None:
    snap = snapshot()
    assert resolve_target(snap, "wg0")[1] == DEVICE_IFACE
    assert resolve_target(snap, "office")[1] == PEER_IFACE
    assert resolve_target(snap, "wg0/office")[1] == PEER_IFACE
    assert resolve_target(snap, KEY_A)[0] == PEER
    with pytest.raises(CtlError) as err:
        resolve_target(snap, "wg1/office")
    assert err.value.status == client.EXIT_NO_SUCH == 5
    assert "managed: wg0, wg0/office" in str(err.value)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("org.freedesktop.DBus.Error.ServiceUnknown", client.EXIT_NOT_RUNNING),
        ("org.freedesktop.DBus.Error.NameHasNoOwner", client.EXIT_NOT_RUNNING),
        ("org.freedesktop.systemd1.NoSuchUnit", client.EXIT_NOT_RUNNING),  # installed, disabled
        ("org.freedesktop.systemd1.UnitMasked", client.EXIT_NOT_RUNNING),
        ("org.freedesktop.DBus.Error.AccessDenied", client.EXIT_NOT_AUTHORIZED),
        ("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", client.EXIT_NOT_AUTHORIZED),
        ("org.freedesktop.DBus.Error.InvalidArgs", client.EXIT_USAGE),
        ("io.github.stunmeshd.StunMesh1.Error.NoSuchDevice", client.EXIT_NO_SUCH),
        ("io.github.stunmeshd.StunMesh1.Error.NoSuchPeer", client.EXIT_NO_SUCH),
        ("io.github.stunmeshd.StunMesh1.Error.StunFailed", client.EXIT_FAILURE),
    ],
)
def test_daemon_errors_become_exit_statuses(name: str, status: int) -> None:
    assert client.error_from_reply(name, ["why"], "Refresh", "system").status == status


def test_a_disabled_service_is_reported_with_how_to_enable_it() -> None:
    why = "Unit dbus-io.github.stunmeshd.StunMesh1.service not found."
    error = client.error_from_reply(
        "org.freedesktop.systemd1.NoSuchUnit", [why], "GetAll", "system"
    )
    assert why in str(error) and "systemctl enable --now stunmeshd" in str(error)


def test_not_authorized_names_the_action_and_the_remedy_once() -> None:
    text = str(
        client.error_from_reply(
            "org.freedesktop.DBus.Error.AccessDenied", ["not authorized"], "Refresh", "system"
        )
    )
    assert "io.github.stunmeshd.StunMesh1.refresh" in text
    assert "root" in text and client.RULES_EXAMPLE in text
    assert text.lower().count("not authorized") == 0  # said once, plainly: "you do not have"


def test_no_bus_and_no_daemon_are_told_apart(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--bus", f"unix:path={tmp_path}/none", "status"]) == client.EXIT_NOT_RUNNING
    err = capsys.readouterr().err
    assert "cannot connect to the bus at" in err and "Is D-Bus running" in err
    assert "stunmeshd is not running" not in err
    gone = client.error_from_reply(
        "org.freedesktop.DBus.Error.ServiceUnknown", ["x"], "GetAll", "system"
    )
    assert "stunmeshd is not running" in str(gone) and "systemctl start stunmeshd" in str(gone)


def test_usage_errors_exit_2_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == client.EXIT_USAGE
    assert main(["log-level", "loud"]) == client.EXIT_USAGE
    assert main(["refresh", "--timeout", "5"]) == client.EXIT_USAGE  # needs --wait
    assert main(["refresh", "--wait", "--timeout", "-1"]) == client.EXIT_USAGE
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "stunmeshctl 0.1.0"


def test_help_documents_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0  success", "3  stunmeshd is not running", "4  not authorized", "5  no such"):
        assert line in out


def test_stunmeshctl_imports_only_client_modules() -> None:
    """``python -X importtime``: the engine, stores, STUN and bus server stay unloaded."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import stunmeshd.ctl.cli"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if "|" in line}
    ours = {m for m in loaded if m.startswith("stunmeshd")}
    assert ours == {
        "stunmeshd",
        "stunmeshd.bus",
        "stunmeshd.bus.address",
        "stunmeshd.bus.names",
        "stunmeshd.model",
        "stunmeshd.ctl",
        "stunmeshd.ctl.agent",
        "stunmeshd.ctl.cli",
        "stunmeshd.ctl.client",
        "stunmeshd.ctl.view",
    }, ours
    assert not {"nacl", "aiohttp", "yaml", "pyroute2"} & loaded
