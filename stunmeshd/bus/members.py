"""One declaration per D-Bus method or signal: ``@bus_method`` and ``@bus_signal``.

A method's declaration says everything the layer needs about it: its member name, the polkit
action guarding it (or none: public), whether it spends the caller's Refresh budget, the known
keys of its ``a{sv}`` options and the names of its out-args. The decorator wraps the body so
that, in this order, the caller is authorized (polkit, then the budget), the options are
checked, and any exception leaves as a named D-Bus error (``errors.translated``). The policy
table, GetPermissions' action list and introspection's arg names are read from these
declarations (``declared_methods``, ``method_policy``), so they are written nowhere else.

``TableInterface`` checks every class at creation (``check_members``) and raises ``TypeError``
for what dbus-fast would accept silently and get wrong (docs/dbus-fast-notes.md, "Rules that
fail silently"): a string annotation (read as a raw signature when it happens to look like one,
and ``-> None`` under ``from __future__ import annotations`` is the string "None"); a member
exported with plain ``@dbus_method`` (untranslated errors reach the caller as dbus-fast's
anonymous ``ServiceError``, and it has no policy); out-args or signal args left unnamed; two
attributes exporting the same member name.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin

from dbus_fast import SignatureTree
from dbus_fast.annotations import DBusSignature
from dbus_fast.service import dbus_method, dbus_signal

from stunmeshd.bus.auth import PUBLIC, Rule
from stunmeshd.bus.errors import translated
from stunmeshd.bus.options import parse_options

F = TypeVar("F", bound=Callable[..., Any])

# the ``a{sv}`` options argument as a method body sees it: checked against the declared keys,
# values unwrapped (``{"wait": True}``); on the bus it is still a{sv}
CheckedOptions = Annotated[dict[str, Any], DBusSignature("a{sv}")]
# dbus-fast's markers on a decorated function (private names, pinned with dbus-fast>=5,<6)
_DBUS_METHOD = "__DBUS_METHOD"
_DBUS_SIGNAL = "__DBUS_SIGNAL"
SPEC_ATTR = "__stunmeshd_member"  # our declaration, next to dbus-fast's
OPTIONS_ARG = "options"


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What one ``@bus_method`` declares."""

    member: str
    rule: Rule
    options: Mapping[str, str] | None  # known keys of the ``options`` a{sv}; None: no options
    out: tuple[str, ...]  # out-arg names, as introspection shows them


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """What one ``@bus_signal`` declares."""

    member: str
    signature: str
    args: tuple[str, ...]


def bus_method(
    member: str,
    *,
    action: str | None = None,
    public: bool = False,
    budget: bool = False,
    options: Mapping[str, str] | None = None,
    out: Iterable[str] = (),
) -> Callable[[F], F]:
    """Export the decorated body as ``member``: guarded by polkit ``action`` or ``public``
    (one of the two, said explicitly: a forgotten action must not make a method public),
    spending the caller's Refresh budget when ``budget``, its ``options`` a{sv} checked against
    ``options`` (option -> signature), its out-args named ``out``."""
    if public == (action is not None):
        raise TypeError(f"method {member}: give its polkit action=..., or public=True")
    spec = MethodSpec(member, Rule(action, rate_limited=budget), options, tuple(out))

    def decorate(fn: F) -> F:
        signature = _dbus_signature(fn, member)
        _check_names(f"method {member}", _out_signature(signature, member), spec.out)
        if options is not None and (
            OPTIONS_ARG not in signature.parameters
            or _annotated_signature(signature.parameters[OPTIONS_ARG].annotation) != "a{sv}"
        ):
            raise TypeError(f"method {member}: options need an `{OPTIONS_ARG}: CheckedOptions` arg")
        guarded = spec.rule != PUBLIC
        if (guarded or options is not None) and not inspect.iscoroutinefunction(fn):
            raise TypeError(f"method {member}: a guarded method or one with options is async")
        if inspect.iscoroutinefunction(fn):
            wrapper = _async_wrapper(fn, spec)
        else:
            wrapper = _sync_wrapper(fn, spec)
        exported = dbus_method(name=member)(wrapper)
        exported.__dict__[SPEC_ATTR] = spec
        return exported  # type: ignore[return-value]

    return decorate


def _async_wrapper(fn: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
    """Authorize, check the options, run ``fn``: every failure a named D-Bus error."""
    names = list(inspect.signature(fn).parameters)[1:]  # the bus passes args without self
    position = names.index(OPTIONS_ARG) if spec.options is not None else -1

    @functools.wraps(fn)
    async def call(self: Any, *args: Any) -> Any:
        with translated(spec.member):
            if spec.rule != PUBLIC:
                await self.ctx.auth.authorize(spec.rule, spec.member, self.polkit_details())
            if spec.options is not None:
                checked = parse_options(args[position], spec.options)
                args = (*args[:position], checked, *args[position + 1 :])
            return await fn(self, *args)

    return call


def _sync_wrapper(fn: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(self: Any, *args: Any) -> Any:
        with translated(spec.member):
            return fn(self, *args)

    return call


def bus_signal(member: str, *, args: Iterable[str] = ()) -> Callable[[F], F]:
    """Declare signal ``member`` with its args named ``args``; the body is never called (the
    interface sends it with ``TableInterface.send``), its return annotation is the signature."""

    def decorate(fn: F) -> F:
        signature = _out_signature(_dbus_signature(fn, member), member)
        spec = SignalSpec(member, signature, tuple(args))
        _check_names(f"signal {member}", signature, spec.args)
        exported = dbus_signal(name=member)(fn)
        exported.__dict__[SPEC_ATTR] = spec
        return exported  # type: ignore[return-value]

    return decorate


# ---- what a class declares ------------------------------------------------------------------


def declared_methods(cls: type) -> dict[str, MethodSpec]:
    """Member name -> declaration, for every exported method of ``cls`` (inherited ones first)."""
    return {spec.member: spec for spec in _specs(cls, MethodSpec)}


def declared_signals(cls: type) -> dict[str, SignalSpec]:
    return {spec.member: spec for spec in _specs(cls, SignalSpec)}


def method_policy(classes: Iterable[Any]) -> dict[tuple[str, str], Rule]:
    """(interface, member) -> rule over ``classes`` (each with an ``interface`` name)."""
    return {
        (cls.interface, member): spec.rule
        for cls in classes
        for member, spec in declared_methods(cls).items()
    }


def guarded_actions(classes: Iterable[Any]) -> tuple[str, ...]:
    """Every polkit action a method of ``classes`` needs, in declaration order."""
    rules = method_policy(classes).values()
    return tuple(dict.fromkeys(r.action for r in rules if r.action is not None))


def check_members(cls: type) -> None:
    """Refuse, at class creation, members dbus-fast would export wrongly or unguarded."""
    seen: dict[str, str] = {}
    for attr, value in _exported(cls):
        spec = getattr(value, "__dict__", {}).get(SPEC_ATTR)
        if spec is None:  # plain @dbus_method/@dbus_signal, or an override dropping ours
            raise TypeError(
                f"{cls.__name__}.{attr}: declare exported members with bus_method or "
                "bus_signal (stunmeshd.bus.members)"
            )
        key = f"{type(spec).__name__} {spec.member}"
        if key in seen and seen[key] != attr:
            raise TypeError(f"{cls.__name__}: {key} is exported by both {seen[key]} and {attr}")
        seen[key] = attr


def _exported(cls: type) -> Iterable[tuple[str, Any]]:
    """(attribute, function) of every dbus-fast method and signal of ``cls``, base classes
    first (the order GetPermissions lists the actions in)."""
    done: set[str] = set()
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            marks = getattr(value, "__dict__", {})
            if attr not in done and (_DBUS_METHOD in marks or _DBUS_SIGNAL in marks):
                done.add(attr)
                yield attr, getattr(cls, attr)


def _specs(cls: type, kind: type) -> list[Any]:
    found = [value.__dict__.get(SPEC_ATTR) for _, value in _exported(cls)]
    return [spec for spec in found if isinstance(spec, kind)]


# ---- annotations ----------------------------------------------------------------------------


def _dbus_signature(fn: Callable[..., Any], member: str) -> inspect.Signature:
    """``fn``'s signature, every annotation a real D-Bus type (never a string)."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())[1:]
    for hint in [*(p.annotation for p in params), signature.return_annotation]:
        if isinstance(hint, str):
            raise TypeError(
                f"{member}: annotation {hint!r} is a string; dbus-fast reads strings that look "
                "like a signature as one (and `-> None` as 'None' under `from __future__ import "
                "annotations`): use the typing.Annotated aliases of stunmeshd.bus.types"
            )
    for param in params:
        try:
            found = _annotated_signature(param.annotation)
        except TypeError as exc:
            raise TypeError(f"{member}: {exc}") from None
        if not found:
            raise TypeError(f"{member}: argument {param.name} needs a D-Bus type annotation")
    return signature


def _annotated_signature(hint: Any) -> str:
    """The D-Bus signature of a ``typing.Annotated[..., DBusSignature]`` hint ('' for None)."""
    if hint is None or hint is inspect.Signature.empty:
        return ""
    if get_origin(hint) is Annotated:
        for extra in get_args(hint)[1:]:
            if isinstance(extra, DBusSignature):
                return extra.signature
    raise TypeError(f"{hint!r} is no D-Bus type: use the aliases of stunmeshd.bus.types")


def _out_signature(signature: inspect.Signature, member: str) -> str:
    try:
        return _annotated_signature(signature.return_annotation)
    except TypeError as exc:
        raise TypeError(f"{member}: {exc}") from None


def _check_names(what: str, signature: str, names: tuple[str, ...]) -> None:
    """dbus-fast leaves out-args and signal args unnamed: every one needs its name here."""
    count = len(SignatureTree(signature).types) if signature else 0
    if len(names) != count:
        raise TypeError(f"{what}: {count} arg(s) of ({signature}) but names {names!r}")


__all__ = [
    "CheckedOptions",
    "MethodSpec",
    "SignalSpec",
    "bus_method",
    "bus_signal",
    "check_members",
    "declared_methods",
    "declared_signals",
    "guarded_actions",
    "method_policy",
]
