"""From a ``plugins.<name>`` block to a Store object, without doing any I/O.

``type: exec`` and ``type: shell`` are built in. ``type: builtin`` picks a store class by its
``name``: stunmeshd's own (``cloudflare``, ``opendht``) or a third-party one registered as an
entry point in the group ``stunmeshd.stores`` (``mystore = "mypkg.store:MyStore"``). A
built-in name wins over an entry point of the same name. Every store's module is imported only
when a plugin uses it: a daemon holds the code (and the HTTP stack) of the stores it runs,
nothing else.

The contract for every store class: ``@classmethod from_config(cls, cfg: PluginConfig) ->
Self`` that validates ``cfg`` (raising ConfigError with key ``plugins.<name>.<key>``) and does
no I/O, plus the Store Protocol (``name``, ``get``, ``set``, ``close``). One instance serves
every peer and interface that names the plugin. What a store can do beyond that is its
``capabilities`` (:class:`StoreCapabilities`); a class that declares none is a plain store
(an older class's ``dedup_safe = False`` is still honoured). A store whose values expire
(``dedup_safe=False``) ignores ``dedup: true`` (with a warning).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stunmeshd.config import PluginConfig
from stunmeshd.errors import ConfigError
from stunmeshd.stores.base import PLAIN, Store, StoreCapabilities
from stunmeshd.stores.dedup import DedupStore

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "stunmeshd.stores"
BUILTINS: dict[str, str] = {
    "cloudflare": "stunmeshd.stores.cloudflare:CloudflareStore",
    "opendht": "stunmeshd.stores.opendht:OpenDHTStore",
}
PROGRAM_TYPES: dict[str, str] = {
    "exec": "stunmeshd.stores.exec:ExecStore",
    "shell": "stunmeshd.stores.shell:ShellStore",
}


def _entry_points() -> dict[str, EntryPoint]:
    """Installed third-party stores (importlib.metadata is loaded only when one is asked for)."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            log.warning(
                "two installed stores are named %s; using %s", ep.name, found[ep.name].value
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def is_builtin(name: str) -> bool:
    """Whether ``type: builtin`` accepts ``name`` (stunmeshd's own need no entry-point scan)."""
    return name in BUILTINS or name in _entry_points()


def builtin_names() -> set[str]:
    """Names accepted by ``type: builtin``: stunmeshd's own plus installed entry points."""
    return set(BUILTINS) | set(_entry_points())


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _load_builtin(name: str, key: str) -> type:
    eps = _entry_points() if name not in BUILTINS else {}
    if name not in BUILTINS and name not in eps:
        known = ", ".join(sorted(set(BUILTINS) | set(eps)))
        raise ConfigError(f"unknown builtin store {name!r}; known: {known}", key=key)
    where = BUILTINS[name] if name in BUILTINS else eps[name].value
    try:
        cls = _import_target(BUILTINS[name]) if name in BUILTINS else eps[name].load()
    except Exception as exc:
        raise ConfigError(
            f"builtin store {name!r} ({where}) cannot be loaded: {type(exc).__name__}: {exc}",
            key=key,
        ) from None
    if not isinstance(cls, type):
        raise ConfigError(f"builtin store {name!r} ({where}) is not a class", key=key)
    return cls


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def _redact(text: str, options: Mapping[str, Any]) -> str:
    """Blank out option values (tokens!) a third-party error message may quote."""
    for secret in sorted(set(_strings(options)), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _capabilities(store: Any, label: str, where: str) -> StoreCapabilities:
    """The store's declared capabilities, set on it (defaults for a class declaring none).

    The one place that looks at what a store class offers; everything else reads
    ``store.capabilities``. A capability whose method is missing is a ConfigError.
    """
    caps = getattr(store, "capabilities", None)
    if caps is None:
        caps = replace(PLAIN, dedup_safe=bool(getattr(store, "dedup_safe", True)))
        try:
            store.capabilities = caps
        except AttributeError:
            raise ConfigError(f"store {label!r} cannot be given capabilities", key=where) from None
    elif not isinstance(caps, StoreCapabilities):
        raise ConfigError(f"store {label!r}: capabilities is not StoreCapabilities", key=where)
    promised = {"get_all": caps.get_all, "watch": caps.supports_watch}
    lacking = [m for m, on in promised.items() if on and not callable(getattr(store, m, None))]
    if lacking:
        raise ConfigError(
            f"store {label!r} declares capabilities it lacks ({', '.join(lacking)})", key=where
        )
    return caps


def create_store(cfg: PluginConfig) -> Store:
    """Build the store for ``cfg`` (wrapped in a DedupStore for ``dedup: true``).

    No I/O happens here: connections are made and programs run on first use. Raises
    ConfigError naming ``plugins.<name>.<key>`` for a bad type, an unknown or unloadable
    builtin, or options the store class rejects.
    """
    where = f"plugins.{cfg.name}"
    cls: type
    if cfg.type in PROGRAM_TYPES:
        cls, label = _import_target(PROGRAM_TYPES[cfg.type]), cfg.type
    elif cfg.type == "builtin":
        if not cfg.builtin:
            known = ", ".join(sorted(builtin_names()))
            raise ConfigError(
                f"a builtin plugin needs a name (one of: {known})", key=f"{where}.name"
            )
        cls, label = _load_builtin(cfg.builtin, f"{where}.name"), cfg.builtin
    else:
        raise ConfigError(
            f"unknown plugin type {cfg.type!r}; expected builtin, exec or shell",
            key=f"{where}.type",
        )

    from_config = getattr(cls, "from_config", None)
    if not callable(from_config):
        raise ConfigError(f"store {label!r} has no from_config(cfg) classmethod", key=where)
    try:
        store: Store = from_config(cfg)
    except ConfigError:
        raise
    except Exception as exc:
        reason = _redact(str(exc), cfg.options)
        raise ConfigError(
            f"store {label!r} rejected its configuration: {type(exc).__name__}: {reason}", key=where
        ) from None
    missing = [m for m in ("get", "set", "close") if not callable(getattr(store, m, None))]
    if missing or not isinstance(getattr(store, "name", None), str):
        lacks = ", ".join(missing) if missing else "name"
        raise ConfigError(
            f"store {label!r} does not implement the Store protocol ({lacks})", key=where
        )

    caps = _capabilities(store, label, where)
    if not cfg.dedup:
        return store
    if not caps.dedup_safe:
        log.warning(
            "%s.dedup: ignored for %s, whose records expire and must be refreshed", where, label
        )
        return store
    return DedupStore(store)
