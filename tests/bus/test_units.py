"""Bus-layer pieces that need no bus: options, rate limits, error names, property tables, the
shipped data files against the code, and stunmeshctl's formatting and exit codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import DBusError, Variant
from dbus_fast.introspection import Node

from stunmeshd.bus.auth import PUBLIC, Caller
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
from stunmeshd.bus.members import guarded_actions
from stunmeshd.bus.names import (
    DEVICE_IFACE,
    MANAGER_IFACE,
    PEER_IFACE,
    Error,
)
from stunmeshd.bus.options import REFRESH_OPTIONS, parse_options
from stunmeshd.bus.peer import PeerInterface
from stunmeshd.bus.ratelimit import RateLimiter
from stunmeshd.bus.service import INTERFACES, METHOD_POLICY
from stunmeshd.ctl import client
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
    assert peer_iface.property_RxBytes == 0 and peer_iface.property_Name == ""  # exported getters


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
    guarded = {rule.action for rule in METHOD_POLICY.values() if rule != PUBLIC}
    assert guarded == set(guarded_actions(INTERFACES)) == set(polkit_actions())
    refreshes = [k for k, r in METHOD_POLICY.items() if k[1] == "Refresh"]
    assert all(METHOD_POLICY[k].rate_limited for k in refreshes) and len(refreshes) == 3


def polkit_actions() -> dict[str, tuple[str | None, ...]]:
    """The shipped polkit actions: id -> (allow_any, allow_inactive, allow_active)."""
    root = ET.parse(REPO / "polkit" / "io.github.stunmeshd.StunMesh1.policy").getroot()
    return {
        str(action.get("id")): tuple(
            action.findtext(f"defaults/{k}")
            for k in ("allow_any", "allow_inactive", "allow_active")
        )
        for action in root.findall("action")
    }


def test_stunmeshctl_knows_the_action_of_each_guarded_method() -> None:
    """stunmeshctl names the action in "not authorized" without importing the daemon side."""
    declared = {m: rule.action for (_, m), rule in METHOD_POLICY.items() if rule.action}
    assert client.METHOD_ACTIONS == declared


def test_polkit_policy_matches_the_contract() -> None:
    assert polkit_actions() == {
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


def test_properties_are_declared_once_in_the_table() -> None:
    """Each table row becomes the exported getter; a hand-written second one is refused."""
    peer_iface = interfaces()[PEER_IFACE]
    exported = {p.name for p in peer_iface.introspect().properties}
    assert exported == set(peer_iface.table.props)

    from stunmeshd.bus.properties import Prop, PropertyTable, TableInterface

    with pytest.raises(TypeError, match="properties come from the table"):

        class Twice(TableInterface):
            table = PropertyTable([Prop("Thing", "s", str, (), "")])

            def property_Thing(self) -> str:
                return "hand-written"
