"""The one rule for caller input in messages: bounded and escaped, whatever the caller sent.

Any unprivileged caller may send a string or dictionary of up to dbus-daemon's message limit
(32 MiB). An error or log message that repeats it verbatim (or through ``repr``, which turns one
control character into four bytes) can exceed that limit, and dbus-daemon then disconnects the
*service*. So caller input enters a message only through ``caller_text`` (at most
CALLER_TEXT_LIMIT characters, control and formatting characters escaped), and every error reply
the service sends passes ``bounded_error_text`` (the net for texts composed elsewhere, such as
dbus-fast's own errors): no reply grows with the size of the request.
"""

from __future__ import annotations

CALLER_TEXT_LIMIT = 80  # characters of escaped caller input: at most 320 bytes of UTF-8
ERROR_TEXT_LIMIT = 500  # characters of one error text (at most 2000 bytes), whatever it holds


def _escaped(ch: str) -> str:
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    return repr(ch)[1:-1]  # \x01, \n, \u202e, \U000e0001 ...


def caller_text(value: object, limit: int = CALLER_TEXT_LIMIT) -> str:
    """``value`` quoted, control characters escaped, cut after ``limit`` characters of output
    with the original length said: ``"wg\\x01\\x01"… (8388608 characters)``."""
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    used = 0
    for ch in text:
        piece = _escaped(ch)
        if used + len(piece) > limit:
            return f'"{"".join(out)}"… ({len(text)} characters)'
        out.append(piece)
        used += len(piece)
    return f'"{"".join(out)}"'


def bounded_error_text(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """An error text fit to send: control characters escaped, at most ``limit`` characters.

    Our own texts already pass (they quote caller input with ``caller_text``); this catches
    texts that echo a caller's argument we did not compose ourselves."""
    head = text[: limit + 1]
    safe = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in head)
    if len(text) <= limit and len(safe) <= limit:
        return safe
    suffix = f"… (cut, {len(text)} characters)"
    return safe[: limit - len(suffix)] + suffix
