"""Bus-layer pieces that need no bus: options, rate limits, error names, property tables, the
shipped data files against the code, and stunmeshctl's formatting and exit codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import DBusError, Variant
from dbus_fast.introspection import Node

from stunmeshd import ctl
from stunmeshd.bus.auth import METHOD_POLICY, PUBLIC, Caller
from stunmeshd.bus.bounded import (
    CALLER_TEXT_LIMIT,
    ERROR_TEXT_LIMIT,
    bounded_error_text,
    caller_text,
)
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.device import DeviceInterface
from stunmeshd.bus.errors import error_name_for, to_dbus_error
from stunmeshd.bus.manager import ManagerInterface
from stunmeshd.bus.names import (
    ACTIONS,
    DEVICE_IFACE,
    MANAGER_IFACE,
    PEER_IFACE,
    Error,
)
from stunmeshd.bus.options import REFRESH_OPTIONS, parse_options
from stunmeshd.bus.peer import PeerInterface
from stunmeshd.bus.ratelimit import RateLimiter
from stunmeshd.errors import (
    ConfigError,
    DeviceNotFound,
    RecordError,
    StoreError,
    StunError,
    WireGuardError,
)
from stunmeshd.model import PeerState
from tests.bus.standin import StandInEngine

REPO = Path(__file__).resolve().parents[2]


def interfaces() -> dict[str, Any]:
    engine = StandInEngine()
    dev = engine.add_device("wg0")
    peer = engine.add_peer(dev, "office")
    ctx = BusContext(bus=None, engine=engine, auth=None)  # type: ignore[arg-type]
    return {
        MANAGER_IFACE: ManagerInterface(ctx),
        DEVICE_IFACE: DeviceInterface(ctx, dev),
        PEER_IFACE: PeerInterface(ctx, peer),
    }


# ---- options -------------------------------------------------------------------------------


def test_options_accept_known_keys_with_the_right_type() -> None:
    assert parse_options({}, REFRESH_OPTIONS) == {}
    assert parse_options({"wait": Variant("b", True)}, REFRESH_OPTIONS) == {"wait": True}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"wiat": Variant("b", True)}, 'unknown option "wiat" (known options: wait)'),
        ({"wait": Variant("s", "yes")}, 'option "wait" must have type "b", not "s"'),
        ({"wait": True}, 'option "wait" must have type "b", not ""'),
        ([], "options must be a dictionary a{sv}"),
    ],
)
def test_options_refuse_the_rest_with_invalid_args(options: Any, message: str) -> None:
    with pytest.raises(DBusError) as err:
        parse_options(options, REFRESH_OPTIONS)
    assert err.value.type == Error.INVALID_ARGS
    assert err.value.text == message


# ---- caller input in messages ---------------------------------------------------------------


def test_caller_text_quotes_escapes_and_bounds() -> None:
    assert caller_text("wg0") == '"wg0"'
    assert caller_text('a"b\\c') == '"a\\"b\\\\c"'
    assert caller_text("\x1b[31m\n\u202e") == '"\\x1b[31m\\n\\u202e"'
    huge = caller_text("\x01" * (8 << 20))
    assert huge.endswith(f"… ({8 << 20} characters)")
    assert len(huge.encode()) <= CALLER_TEXT_LIMIT * 4 + 40
    assert "\x01" not in huge


def test_every_error_text_is_bounded_and_escaped() -> None:
    assert bounded_error_text("no such peer") == "no such peer"
    cut = bounded_error_text("x\x01" * 100_000)
    assert len(cut) <= ERROR_TEXT_LIMIT and cut.endswith("(cut, 200000 characters)")
    assert "\x01" not in cut and "\\x01" in cut


def test_rate_budget_is_per_user_and_per_root_process() -> None:
    assert Caller(uid=1000, pid=1).budget_key == Caller(uid=1000, pid=2).budget_key
    assert Caller(uid=0, pid=1).budget_key != Caller(uid=0, pid=2).budget_key


# ---- rate limit ----------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_the_rate_per_caller() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.allow(":1.5") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(":1.6")  # another caller is not affected
    assert limiter.retry_after(":1.5") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.allow(":1.5") and not limiter.allow(":1.5")


def test_rate_limiter_forgets_idle_callers() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0], max_keys=10)
    for i in range(10):
        limiter.allow(f":1.{i}")
    now[0] += 5.0  # all full again
    limiter.allow(":2.0")
    assert len(limiter) == 1


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "name"),
    [
        (StunError, Error.STUN_FAILED),
        (StoreError, Error.STORE_FAILED),
        (RecordError, Error.STORE_FAILED),
        (DeviceNotFound, Error.NOT_READY),
        (WireGuardError, Error.NOT_READY),
        (ConfigError, Error.FAILED),
        (None, Error.FAILED),
        (KeyError, Error.FAILED),
    ],
)
def test_cycle_causes_map_to_named_errors(cause: type[BaseException] | None, name: str) -> None:
    assert error_name_for(cause) == name


def test_unexpected_exceptions_do_not_leak_their_text() -> None:
    err = to_dbus_error(RuntimeError("token=SECRET in a traceback"), member="Refresh")
    assert err.type == Error.FAILED
    assert "SECRET" not in err.text and "RuntimeError" in err.text


# ---- property tables -----------------------------------------------------------------------


def test_property_values_follow_the_model_and_never_raise() -> None:
    ifaces = interfaces()
    peer_iface = ifaces[PEER_IFACE]
    peer = peer_iface.status
    peer.update(state=PeerState.CONNECTED, rx_bytes=10)
    values = {k: v.value for k, v in peer_iface.dbus_values().items()}
    assert values["State"] == 4 and values["RxBytes"] == 10 and values["Name"] == "office"
    object.__setattr__(peer, "rx_bytes", -1)  # impossible for "t"
    object.__setattr__(peer, "name", None)
    assert peer_iface.rx_bytes == 0 and peer_iface.name_ == ""


def test_changed_fields_map_to_property_names() -> None:
    device_iface = interfaces()[DEVICE_IFACE]
    changed = device_iface.table.changed(
        device_iface.status, ["state", "public_endpoints", "not_a_field"]
    )
    assert set(changed) == {"State", "PublicEndpoints"}


# ---- the contract files against the code ---------------------------------------------------


def members(iface: Any) -> dict[str, Any]:
    """Everything introspection says about an interface, arg names and annotations included."""
    return {
        "annotations": iface.annotations,
        "methods": {
            m.name: (
                [(a.name, a.signature) for a in m.in_args],
                [(a.name, a.signature) for a in m.out_args],
            )
            for m in iface.methods
        },
        "signals": {s.name: [(a.name, a.signature) for a in s.args] for s in iface.signals},
        "properties": {p.name: (p.signature, p.access.value) for p in iface.properties},
    }


@pytest.mark.parametrize("name", [MANAGER_IFACE, DEVICE_IFACE, PEER_IFACE])
def test_shipped_xml_matches_the_code(name: str) -> None:
    shipped = Node.parse((REPO / "dbus" / f"{name}.xml").read_text())
    (iface,) = shipped.interfaces
    assert iface.name == name
    assert members(iface) == members(interfaces()[name].introspect())


def test_shipped_xml_documents_every_member() -> None:
    for name in (MANAGER_IFACE, DEVICE_IFACE, PEER_IFACE):
        text = (REPO / "dbus" / f"{name}.xml").read_text()
        for kind, entries in members(Node.parse(text).interfaces[0]).items():
            if kind == "annotations":
                continue
            for member in entries:
                assert f"<!-- {member}:" in text, f"{name} {kind} {member} has no comment"


def test_every_method_has_a_policy_entry_and_nothing_else_does() -> None:
    exported = {
        (name, m.name) for name, iface in interfaces().items() for m in iface.introspect().methods
    }
    assert exported == set(METHOD_POLICY)
    guarded = {rule.action for rule in METHOD_POLICY.values() if rule is not PUBLIC}
    assert guarded == set(ACTIONS)
    refreshes = [k for k, r in METHOD_POLICY.items() if k[1] == "Refresh"]
    assert all(METHOD_POLICY[k].rate_limited for k in refreshes) and len(refreshes) == 3


def test_polkit_policy_matches_the_contract() -> None:
    root = ET.parse(REPO / "polkit" / "io.github.stunmeshd.StunMesh1.policy").getroot()
    found = {
        action.get("id"): tuple(
            action.findtext(f"defaults/{k}")
            for k in ("allow_any", "allow_inactive", "allow_active")
        )
        for action in root.findall("action")
    }
    assert found == {
        "io.github.stunmeshd.StunMesh1.refresh": ("auth_admin_keep", "auth_admin_keep", "yes"),
        "io.github.stunmeshd.StunMesh1.reload": ("auth_admin_keep",) * 3,
        "io.github.stunmeshd.StunMesh1.configure": ("auth_admin_keep",) * 3,
    }


def test_bus_policy_lets_only_root_own_the_name() -> None:
    root = ET.parse(REPO / "dbus" / "io.github.stunmeshd.StunMesh1.conf").getroot()
    owners = [
        (p.attrib, a.get("own"))
        for p in root.findall("policy")
        for a in p.findall("allow")
        if a.get("own")
    ]
    assert owners == [({"user": "root"}, "io.github.stunmeshd.StunMesh1")]
    default = next(p for p in root.findall("policy") if p.get("context") == "default")
    allowed = {a.get("send_interface") for a in default.findall("allow")}
    assert allowed == {
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Properties",
        "org.freedesktop.DBus.ObjectManager",
        "org.freedesktop.DBus.Peer",
        MANAGER_IFACE,
        DEVICE_IFACE,
        PEER_IFACE,
    }


def test_activation_file_hands_over_to_systemd() -> None:
    text = (REPO / "dbus" / "io.github.stunmeshd.StunMesh1.service").read_text()
    assert "Name=io.github.stunmeshd.StunMesh1" in text
    assert "Exec=/bin/false" in text
    assert "SystemdService=dbus-io.github.stunmeshd.StunMesh1.service" in text


# ---- stunmeshctl ---------------------------------------------------------------------------


def snapshot() -> ctl.Snapshot:
    dev = "/io/github/stunmeshd/StunMesh1/Devices/1"
    return ctl.Snapshot(
        manager={
            "Version": "0.1.0",
            "State": 2,
            "StunServers": ["198.51.100.1:3478"],
            "RefreshInterval": 300_000_000,
        },
        devices={
            dev: {
                "Interface": "wg0",
                "State": 4,
                "PublicEndpoints": ["198.51.100.10:40000"],
                "NatMapping": "endpoint-independent",
                "Peers": ["/io/github/stunmeshd/StunMesh1/Peers/1"],
                "PublicKey": "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk=",
                "LastRefresh": 0,
                "LastError": "",
            }
        },
        peers={
            "/io/github/stunmeshd/StunMesh1/Peers/1": {
                "Device": dev,
                "Name": "office",
                "State": 4,
                "Endpoint": "203.0.113.20:51820",
                "PublicKey": "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=",
                "LatestHandshake": 0,
                "Store": "dht",
                "LastError": "",
            },
        },
    )


def test_status_reads_like_a_summary() -> None:
    text = ctl.render_status(snapshot())
    assert text.splitlines() == [
        "stunmeshd 0.1.0: running",
        "STUN servers: 198.51.100.1:3478",
        "refresh interval: 5m",
        "wg0: ready, 198.51.100.10:40000, NAT endpoint-independent, 1/1 peers connected",
    ]


def test_tables_fit_the_terminal_and_shorten_keys() -> None:
    for width in (80, 100, 120):
        for text in (
            ctl.render_peers(snapshot(), None, width),
            ctl.render_devices(snapshot(), width),
        ):
            assert all(len(line) <= width for line in text.splitlines()), (width, text)
            assert "wg0" in text
    wide = ctl.render_peers(snapshot(), None, 200)
    assert "203.0.113.20:51820" in wide  # nothing is cut when there is room
    narrow = ctl.table(
        ["A", "KEY"], [["x", "zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk="]], shrink=(1,), width=20
    )
    assert narrow.splitlines()[1].endswith("…") and len(narrow.splitlines()[1]) <= 20
    assert ctl.short_key("zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk=") == "zo060cy2M+x…"


def test_refresh_targets_resolve_to_objects() -> None:
    snap = snapshot()
    assert ctl.resolve_target(snap, "wg0")[1] == DEVICE_IFACE
    assert ctl.resolve_target(snap, "office")[1] == PEER_IFACE
    assert ctl.resolve_target(snap, "wg0/office")[1] == PEER_IFACE
    key = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="
    assert ctl.resolve_target(snap, key)[0].endswith("/Peers/1")
    with pytest.raises(ctl.CtlError) as err:
        ctl.resolve_target(snap, "wg1/office")
    assert err.value.status == ctl.EXIT_USAGE


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("org.freedesktop.DBus.Error.ServiceUnknown", ctl.EXIT_NOT_RUNNING),
        ("org.freedesktop.DBus.Error.NameHasNoOwner", ctl.EXIT_NOT_RUNNING),
        ("org.freedesktop.systemd1.NoSuchUnit", ctl.EXIT_NOT_RUNNING),  # installed, disabled
        ("org.freedesktop.systemd1.UnitMasked", ctl.EXIT_NOT_RUNNING),
        ("org.freedesktop.DBus.Error.AccessDenied", ctl.EXIT_NOT_AUTHORIZED),
        ("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", ctl.EXIT_NOT_AUTHORIZED),
        ("org.freedesktop.DBus.Error.InvalidArgs", ctl.EXIT_USAGE),
        ("io.github.stunmeshd.StunMesh1.Error.StunFailed", ctl.EXIT_FAILURE),
    ],
)
def test_daemon_errors_become_exit_statuses(name: str, status: int) -> None:
    assert ctl.error_from_reply(name, ["why"], "Refresh").status == status


def test_a_disabled_service_is_reported_with_how_to_enable_it() -> None:
    why = "Unit dbus-io.github.stunmeshd.StunMesh1.service not found."
    error = ctl.error_from_reply("org.freedesktop.systemd1.NoSuchUnit", [why], "GetAll")
    assert why in str(error) and "systemctl enable --now stunmeshd" in str(error)


def test_ctl_without_a_daemon_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert ctl.main(["--bus", f"unix:path={tmp_path}/none", "status"]) == ctl.EXIT_NOT_RUNNING
    assert "is stunmeshd running?" in capsys.readouterr().err


def test_ctl_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["frobnicate"]) == ctl.EXIT_USAGE
    assert ctl.main(["log-level", "loud"]) == ctl.EXIT_USAGE


def test_ctl_help_documents_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["--help"]) == 0
    out = capsys.readouterr().out
    for line in ("0  success", "3  stunmeshd is not running", "4  not authorized"):
        assert line in out
