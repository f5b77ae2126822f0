"""YAML composed within fixed bounds, so any input fails fast with one line instead of
exhausting time, memory or the stack.

PyYAML keeps an alias as a reference to its anchor's node, so composing is cheap; the cost
comes later, when merge keys (``<<``) are flattened or values constructed — a ~500-byte
"billion laughs" file expands to gigabytes. ``compose`` therefore limits nesting while it
composes, and ``inspect`` measures the tree *as expanded* (each node once, with memo) before
anything expands it, refusing cycles, oversized expansions, numbers too long to convert
safely and text that is not text (lone surrogates, NUL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

MAX_DEPTH = 64  # nesting levels; a real configuration uses 7 (plugin options a few more)
MAX_NODES = 100_000  # nodes after expanding every alias and merge; a real file has < 1,000
MAX_NUMBER_CHARS = 40  # an integer longer than this is out of every range the schema has

_INT_TAG = "tag:yaml.org,2002:int"


class YamlLimit(Exception):
    """The document exceeds a bound. ``line`` (1-based) and ``key`` say where, when known."""

    def __init__(self, reason: str, *, line: int | None = None, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.key = key


def line_of(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


#: libyaml's parser (C) when PyYAML was built with it: the same YAML, about 20 times faster,
#: so even a maximal file is read in well under a second. Else PyYAML's own (pure Python).
_Loader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_NODE = (yaml.ScalarEvent, yaml.AliasEvent, *_START)


def compose(text: str) -> yaml.Node | None:
    """The single document of ``text`` as a node tree (None when empty).

    The events are counted first, without building anything: nesting beyond MAX_DEPTH or more
    than MAX_NODES nodes as written stop the read there (a composer recursing 10,000 levels
    would exhaust the stack). Raises YamlLimit, or PyYAML's own errors for bad YAML.
    """
    _bound_events(text)
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _bound_events(text: str) -> None:
    loader = _Loader(text)
    depth = nodes = 0
    try:
        while (event := loader.get_event()) is not None:
            if isinstance(event, _NODE):
                nodes += 1
                if nodes > MAX_NODES:
                    raise YamlLimit(f"has more than {MAX_NODES:,} values", line=_event_line(event))
            if isinstance(event, _START):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlLimit(
                        f"nested deeper than {MAX_DEPTH} levels", line=_event_line(event)
                    )
            elif isinstance(event, _END):
                depth -= 1
            if isinstance(event, yaml.StreamEndEvent):
                break
    finally:
        loader.dispose()


def _event_line(event: Any) -> int | None:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else None


def inspect(root: yaml.Node, join: Callable[[str, str], str]) -> None:
    """Check the tree as it would be expanded, visiting each node once.

    ``join(parent_key, name)`` builds the key path used in messages. Raises YamlLimit for a
    node that contains itself, an expansion over MAX_NODES nodes or MAX_DEPTH levels, an
    integer over MAX_NUMBER_CHARS characters, or text with a lone surrogate or a NUL.
    """
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, expanded depth)
    open_: set[int] = set()  # nodes on the current path (their subtree is being measured)
    # (node, key path, children measured?)
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, key, measured = stack.pop()
        ident = id(node)
        if measured:
            size, depth = 1, 1
            for child, _ in _children(node, key, join):
                child_size, child_depth = done[id(child)]
                size += child_size
                depth = max(depth, child_depth + 1)
            open_.discard(ident)
            done[ident] = (size, depth)
            if size > MAX_NODES:
                raise YamlLimit(
                    f"expands to more than {MAX_NODES:,} values through aliases or merge keys",
                    line=line_of(node),
                    key=key or None,
                )
            if depth > MAX_DEPTH:
                raise YamlLimit(
                    f"nested deeper than {MAX_DEPTH} levels through aliases",
                    line=line_of(node),
                    key=key or None,
                )
            continue
        if ident in done:
            continue
        if ident in open_:
            raise YamlLimit(
                "refers to itself through an alias", line=line_of(node), key=key or None
            )
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node, key)
            done[ident] = (1, 1)
            continue
        open_.add(ident)
        stack.append((node, key, True))
        # reversed: children are visited in document order, so a node is first reached (and
        # named in messages) where it is written, before any alias to it
        stack.extend((c, path, False) for c, path in reversed(_children(node, key, join)))


def _children(
    node: yaml.Node, key: str, join: Callable[[str, str], str]
) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{key}[{i}]") for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, str]] = []
        for knode, vnode in node.value:
            name = knode.value if isinstance(knode, yaml.ScalarNode) else ""
            pairs.append((knode, key))
            pairs.append((vnode, join(key, name) if _is_text(name) else key))
        return pairs
    return []


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in value


def _check_scalar(node: yaml.ScalarNode, key: str) -> None:
    value = node.value
    if not isinstance(value, str):
        return
    if not _is_text(value):
        what = "a NUL character" if "\0" in value else "a lone surrogate (like \\ud800)"
        raise YamlLimit(f"contains {what}, which is not text", line=line_of(node), key=key or None)
    if node.tag == _INT_TAG and len(value) > MAX_NUMBER_CHARS:
        raise YamlLimit(
            f"is a number with {len(value)} characters: out of range (at most {MAX_NUMBER_CHARS})",
            line=line_of(node),
            key=key or None,
        )
