"""Man pages generated from the argument parsers and the config key list, so they cannot drift
from ``--help`` or the loader: stunmeshd(8), stunmeshctl(1), stunmeshd.conf(5).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable

from stunmeshd import __version__
from stunmeshd.docgen.conf_keys import KEYS, SECTIONS


def esc(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no leading control char."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def paragraph(text: str) -> list[str]:
    """Prose as roff lines (a line may not start with a control character)."""
    return [esc(line.strip()) for line in text.strip().splitlines() if line.strip()] or [""]


def header(name: str, section: int, title: str) -> list[str]:
    stamp = os.environ.get("SOURCE_DATE_EPOCH")
    date = time.strftime("%Y-%m-%d", time.gmtime(int(stamp))) if stamp else ""
    return [f'.TH {esc(name.upper())} {section} "{date}" "stunmeshd {__version__}" "{title}"']


def option_term(action: argparse.Action) -> str:
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or (action.dest.upper() if action.dest else "VALUE")
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    return f"{names} \\fI{esc(str(metavar))}\\fR"


def options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        lines += [".TP", option_term(action), *paragraph(helptext(action))]
    return lines


def helptext(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"prog": "", "default": action.default}
    if action.choices and action.option_strings:
        text += f" ({', '.join(map(str, action.choices))})"
    return text


def positionals(parser: argparse.ArgumentParser) -> Iterable[argparse.Action]:
    return (a for a in parser._actions if not a.option_strings and a.dest != "help")


def usage_args(parser: argparse.ArgumentParser) -> str:
    parts = []
    for action in positionals(parser):
        metavar = str(action.metavar or action.dest.upper())
        parts.append(
            f"[\\fI{esc(metavar)}\\fR]" if action.nargs == "?" else f"\\fI{esc(metavar)}\\fR"
        )
    return " ".join(parts)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of every documented subcommand (hidden ones have no help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(n, helps[n], p) for n, p in action.choices.items() if n in helps]
    return []


def exit_status(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        code, _, meaning = raw.strip().partition("  ")
        if code.isdigit():
            lines += [".TP", f"\\fB{code}\\fR", esc(meaning.strip())]
    return lines


def stunmeshctl_page() -> str:
    from stunmeshd.ctl.cli import build_parser
    from stunmeshd.ctl.client import EXIT_STATUS_HELP

    parser = build_parser()
    lines = header("stunmeshctl", 1, "User Commands")
    lines += [
        ".SH NAME",
        f"stunmeshctl \\- {esc('query and control stunmeshd over D-Bus')}",
        ".SH SYNOPSIS",
        ".B stunmeshctl",
        "[\\fIOPTIONS\\fR] [\\fICOMMAND\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
        *paragraph(parser.description or ""),
        ".PP",
        *paragraph(
            "Without a command, stunmeshctl prints the status. Interfaces are named as in the "
            "configuration (wg0); peers by their label (hostB), as IFACE/LABEL (wg0/hostB) "
            "or by public key. Read commands answer for anyone; refresh, reload and "
            "log-level LEVEL are decided by polkit."
        ),
        ".SH OPTIONS",
        *options(parser),
        ".SH COMMANDS",
    ]
    for name, text, sub in subcommands(parser):
        lines += [".TP", f"\\fB{esc(name)}\\fR {usage_args(sub)}".rstrip(), *paragraph(text)]
        if sub.description and sub.description != text:
            lines += [".IP", *paragraph(sub.description)]
        sub_options = [
            a for a in sub._actions if a.option_strings and a.dest not in ("help", "json")
        ]
        for action in sub_options:
            lines += [".RS", ".TP", option_term(action), *paragraph(helptext(action)), ".RE"]
    lines += [
        ".SH JSON",
        *paragraph(
            "With --json, read commands print JSON: interfaces, peers (IFACE/NAME) and states "
            "by name, times in RFC 3339 (UTC; null for never), the D-Bus object path of each "
            "object as object_path and each state's number as state_code. monitor --json "
            "prints one object per line."
        ),
        ".SH EXIT STATUS",
        *exit_status(EXIT_STATUS_HELP),
        ".SH ENVIRONMENT",
        ".TP",
        ".B DBUS_SYSTEM_BUS_ADDRESS",
        *paragraph("The system bus to use instead of /run/dbus/system_bus_socket."),
        ".SH SEE ALSO",
        ".BR stunmeshd (8),",
        ".BR stunmeshd.conf (5),",
        ".BR busctl (1),",
        ".BR wg (8)",
    ]
    return "\n".join(lines) + "\n"


def stunmeshd_page() -> str:
    from stunmeshd.config import CONFIG_NAMES, SEARCH_DIRS
    from stunmeshd.daemon import build_parser

    parser = build_parser()
    lines = header("stunmeshd", 8, "System Administration")
    lines += [
        ".SH NAME",
        "stunmeshd \\- " + esc("peer-to-peer WireGuard through NAT with STUN and key-value stores"),
        ".SH SYNOPSIS",
        ".B stunmeshd",
        "[\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        *paragraph(parser.description or ""),
        ".PP",
        *paragraph(
            "For every configured WireGuard interface stunmeshd discovers the interface's "
            "public endpoint with STUN sent from WireGuard's own UDP port, seals it for each "
            "peer with the WireGuard keys and publishes it in a store (Cloudflare DNS, OpenDHT "
            "or a plugin program), fetches each peer's record and sets the peer's endpoint. "
            "It reads stunmesh-go's configuration file and records, so both can share a mesh. "
            "State and control are on the system bus as io.github.stunmeshd.StunMesh1 "
            "(see stunmeshctl(1)). It must run as root (CAP_NET_ADMIN for WireGuard, "
            "CAP_NET_RAW for STUN)."
        ),
        ".SH OPTIONS",
        *options(parser),
        ".SH SIGNALS",
        ".TP",
        ".B SIGHUP",
        *paragraph("Re-read the configuration (as stunmeshctl reload); a bad file is refused."),
        ".TP",
        '.BR SIGTERM ", " SIGINT',
        *paragraph("Stop."),
        ".SH EXIT STATUS",
        ".TP",
        ".B 0",
        *paragraph("Success (with --oneshot: every peer got an endpoint)."),
        ".TP",
        ".B 1",
        *paragraph("Failure at run time (with --oneshot: a peer got no endpoint)."),
        ".TP",
        ".B 2",
        *paragraph("The configuration or the command line is wrong (one line on stderr)."),
        ".SH FILES",
        *paragraph(
            "Without -c or --config-dir the first of "
            + ", ".join(f"{d}/{n}" for d in SEARCH_DIRS for n in CONFIG_NAMES)
            + " is read (unset variables skip their entry)."
        ),
        ".SH SEE ALSO",
        ".BR stunmeshd.conf (5),",
        ".BR stunmeshctl (1),",
        ".BR wg (8)",
    ]
    return "\n".join(lines) + "\n"


def conf_page() -> str:
    from stunmeshd.config import CONFIG_NAMES, SEARCH_DIRS

    lines = header("stunmeshd.conf", 5, "File Formats")
    lines += [
        ".SH NAME",
        f"stunmeshd.conf \\- {esc('stunmeshd configuration (stunmesh-go compatible YAML)')}",
        ".SH SYNOPSIS",
        *paragraph(", ".join(f"{d}/{n}" for d in SEARCH_DIRS for n in CONFIG_NAMES)),
        ".SH DESCRIPTION",
        *paragraph(
            "stunmeshd reads stunmesh-go's YAML file as is, so one file serves both tools. "
            "Durations use Go's syntax (90s, 10m, 1h30m, 500ms); booleans are true or false. "
            "Keys stunmeshd does not know are reported as warnings (stunmesh-go ignores them "
            "silently). stunmeshd --check validates a file. The file holds store tokens: keep "
            "it readable by root only."
        ),
        ".SH KEYS",
    ]
    section = ""
    for key in KEYS:
        title = SECTIONS[key.path.split(".", 1)[0]]
        if title != section:
            section = title
            lines.append(f".SS {esc(title)}")
        lines += [".TP", f"\\fB{esc(key.path)}\\fR (\\fI{esc(key.kind)}\\fR)"]
        text = key.text + (f" Default: {key.default}." if key.default else "")
        lines += paragraph(text)
        if key.compat:
            lines += [".IP", *paragraph(f"stunmesh-go: {key.compat}")]
    lines += [
        ".SH EXAMPLE",
        ".nf",
        *[
            esc(line)
            for line in (
                "refresh_interval: 5m",
                "stun:",
                "  addresses: [stun.example.net:3478]",
                "interfaces:",
                "  wg0:",
                "    peers:",
                "      office:",
                "        public_key: zo060cy2M+x7cMF4FKXHbs0CloUFDTRHRboFhw5YfVk=",
                "        plugin: dht",
                "plugins:",
                "  dht:",
                "    type: builtin",
                "    name: opendht",
                "    endpoints: [http://198.51.100.1:8080]",
            )
        ],
        ".fi",
        ".SH SEE ALSO",
        ".BR stunmeshd (8),",
        ".BR stunmeshctl (1)",
    ]
    return "\n".join(lines) + "\n"


PAGES = {
    "man1/stunmeshctl.1": stunmeshctl_page,
    "man5/stunmeshd.conf.5": conf_page,
    "man8/stunmeshd.8": stunmeshd_page,
}
