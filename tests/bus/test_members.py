"""Member declarations (bus/members.py): what a declaration does to a call, and the dbus-fast
rules that would fail silently, refused when the class is created.

No `from __future__ import annotations` here: the classes below need evaluated annotations,
as the real interface modules do (the string case is built explicitly).
"""

from typing import Any

import pytest
from dbus_fast import DBusError, Variant
from dbus_fast.service import ServiceInterface, dbus_method, dbus_signal

from stunmeshd.bus.auth import Authorizer
from stunmeshd.bus.context import BusContext
from stunmeshd.bus.members import (
    CheckedOptions,
    bus_method,
    bus_signal,
    declared_methods,
    method_policy,
)
from stunmeshd.bus.names import ACTION_RELOAD, Error
from stunmeshd.bus.options import REFRESH_OPTIONS
from stunmeshd.bus.properties import TableInterface
from stunmeshd.bus.types import DBusStr, ObjectPaths
from tests.bus.standin import StandInEngine


class Sample(TableInterface):
    interface = "io.github.stunmeshd.Test"

    @bus_method("Echo", public=True, out=("echoed",))
    def echo(self, word: DBusStr) -> DBusStr:
        return word

    @bus_method("Explode", public=True)
    async def explode(self) -> None:
        raise RuntimeError("token=SECRET")

    @bus_method("Guarded", action=ACTION_RELOAD, options=REFRESH_OPTIONS)
    async def guarded(self, options: CheckedOptions) -> None:
        raise AssertionError("never reached without a caller")

    @bus_method("Options", public=True, options=REFRESH_OPTIONS, out=("seen",))
    async def checked(self, options: CheckedOptions) -> DBusStr:
        return repr(options)

    @bus_signal("Happened", args=("what",))
    def happened(self) -> DBusStr:
        raise NotImplementedError


def sample() -> Sample:
    ctx = BusContext(bus=None, engine=StandInEngine(), auth=Authorizer(None, actions=()))  # type: ignore[arg-type]
    return Sample(ctx, None, "/test")


async def call(iface: ServiceInterface, member: str, *args: Any) -> Any:
    """Call ``member`` as dbus-fast's dispatcher does (``method.fn(interface, *body)``)."""
    (method,) = [m for m in ServiceInterface._get_methods(iface) if m.name == member]
    result = method.fn(iface, *args)
    return await result if hasattr(result, "__await__") else result


# ---- what a declaration does ----------------------------------------------------------------


async def test_a_declared_method_runs_its_body_and_names_its_out_args() -> None:
    iface = sample()
    assert await call(iface, "Echo", "hi") == "hi"
    (echo,) = [m for m in iface.introspect().methods if m.name == "Echo"]
    assert [(a.name, a.signature) for a in echo.out_args] == [("echoed", "s")]
    (signal,) = iface.introspect().signals
    assert [(a.name, a.signature) for a in signal.args] == [("what", "s")]


async def test_an_unexpected_exception_leaves_as_a_named_error_without_its_text() -> None:
    with pytest.raises(DBusError) as err:
        await call(sample(), "Explode")
    assert err.value.type == Error.FAILED and "SECRET" not in err.value.text


async def test_a_guarded_method_authorizes_before_it_reads_the_options() -> None:
    """No caller recorded (not a bus call): AccessDenied, though the options are bad too."""
    with pytest.raises(DBusError) as err:
        await call(sample(), "Guarded", {"wiat": Variant("b", True)})
    assert err.value.type == Error.ACCESS_DENIED


async def test_declared_options_are_checked_and_unwrapped_for_the_body() -> None:
    iface = sample()
    assert await call(iface, "Options", {"wait": Variant("b", True)}) == "{'wait': True}"
    with pytest.raises(DBusError) as err:
        await call(iface, "Options", {"wait": Variant("s", "yes")})
    assert err.value.type == Error.INVALID_ARGS


def test_the_policy_is_read_from_the_declarations() -> None:
    policy = method_policy([Sample])
    assert policy[(Sample.interface, "Guarded")].action == ACTION_RELOAD
    assert policy[(Sample.interface, "Echo")].action is None
    assert set(declared_methods(Sample)) == {"Echo", "Explode", "Guarded", "Options"}


# ---- what dbus-fast would accept and get wrong: refused at class creation -------------------


def test_a_string_annotation_is_refused() -> None:
    """dbus-fast reads "bus" as the signature b+u+s, and `-> None` postponed as "None"."""

    def body(self: Any, word: "bus") -> None:  # type: ignore[name-defined]  # noqa: F821
        raise NotImplementedError

    with pytest.raises(TypeError, match="is a string"):
        bus_method("Word", public=True)(body)


def test_an_annotation_that_is_no_dbus_type_is_refused() -> None:
    def body(self: Any, word: str) -> None:
        raise NotImplementedError

    with pytest.raises(TypeError, match="no D-Bus type"):
        bus_method("Word", public=True)(body)


def test_plain_dbus_fast_members_are_refused() -> None:
    """A plain @dbus_method would have no policy and leak dbus-fast's anonymous ServiceError."""
    with pytest.raises(TypeError, match="declare exported members with bus_method"):

        class Plain(TableInterface):
            interface = "io.github.stunmeshd.Test"

            @dbus_method(name="Raw")
            def raw(self) -> DBusStr:
                return "x"

    with pytest.raises(TypeError, match="declare exported members with bus_method"):

        class PlainSignal(TableInterface):
            interface = "io.github.stunmeshd.Test"

            @dbus_signal(name="Raw")
            def raw(self) -> DBusStr:
                return "x"


def test_an_override_that_drops_the_declaration_is_refused() -> None:
    with pytest.raises(TypeError, match="declare exported members"):

        class Override(Sample):
            def echo(self, word: str) -> str:
                return word


def test_unnamed_out_args_and_signal_args_are_refused() -> None:
    with pytest.raises(TypeError, match="names"):

        @bus_method("Lookup", public=True)
        def lookup(self: Any) -> ObjectPaths:
            return []

    with pytest.raises(TypeError, match="names"):

        @bus_signal("Moved", args=("from", "to"))
        def moved(self: Any) -> DBusStr:
            raise NotImplementedError


def test_one_member_exported_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="exported by both"):

        class Twice(TableInterface):
            interface = "io.github.stunmeshd.Test"

            @bus_method("Same", public=True)
            def one(self) -> None:
                return None

            @bus_method("Same", public=True)
            def other(self) -> None:
                return None


def test_a_method_says_its_action_or_that_it_is_public() -> None:
    """Forgetting the action must not make a method public (nor may it be both)."""
    with pytest.raises(TypeError, match="or public=True"):
        bus_method("Forgot")
    with pytest.raises(TypeError, match="or public=True"):
        bus_method("Both", action=ACTION_RELOAD, public=True)


def test_a_guarded_method_must_be_async() -> None:
    with pytest.raises(TypeError, match="async"):

        @bus_method("Sync", action=ACTION_RELOAD)
        def sync(self: Any) -> None:
            return None


def test_options_need_their_argument() -> None:
    with pytest.raises(TypeError, match="options need"):

        @bus_method("NoOptions", public=True, options=REFRESH_OPTIONS)
        async def no_options(self: Any, level: DBusStr) -> None:
            return None
