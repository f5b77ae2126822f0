"""Every configuration key, for people: the one source of stunmeshd.conf(5).

A test (tests/unit/test_docgen.py) checks this list against the loader both ways: each key
here loads without an "unknown key" warning, and each key the loader knows is here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    path: str  # dotted; <name> marks a name of your choice
    kind: str  # what the value is
    default: str  # "" when required or none
    text: str  # what it does
    compat: str = ""  # how stunmesh-go differs, if it does


DURATION = "duration (Go syntax: 90s, 10m, 1h30m, 500ms)"

KEYS: tuple[Key, ...] = (
    Key(
        "refresh_interval",
        DURATION,
        "10m",
        "How often every interface is re-discovered, re-published and re-fetched. stunmeshd "
        "also reacts at once to network changes and re-fetches a missing record sooner "
        "(see docs/architecture.md, scheduling rules). Stores whose records expire shorten it "
        "(OpenDHT: 240 s).",
        "reads a bare number (600) as nanoseconds; stunmeshd refuses one, with a hint.",
    ),
    Key(
        "log.level",
        "debug, info, warn (or warning), error; or a zerolog number",
        "info",
        "The log level. zerolog's numbers (-1 trace and 0 debug to 5 panic) are read as "
        "stunmesh-go reads them, with a warning naming the word to use.",
    ),
    Key(
        "log.format",
        "console or json",
        "console",
        "console: one line per event for the journal; json: one JSON object per line.",
    ),
    Key(
        "stun.addresses",
        "list of host:port ([v6]:port for IPv6)",
        "stun.l.google.com:19302",
        "STUN servers, tried in order; the NAT mapping test needs one that reports "
        "OTHER-ADDRESS (RFC 5780). Without the key the default is used, with a warning; an "
        "explicitly empty list is an error. One string, or a comma-separated string, is read "
        "as a list (as stunmesh-go does), with a warning.",
    ),
    Key(
        "stun.address",
        "host:port",
        "",
        "The older single-server key: tried before stun.addresses, warned about as deprecated.",
    ),
    Key("ping_monitor.interval", DURATION, "1s", "Default interval of the peers' ping checks."),
    Key("ping_monitor.timeout", DURATION, "1s", "Default timeout of the peers' ping checks."),
    Key(
        "ping_monitor.fixed_retries",
        "integer",
        "3",
        "Quick retries after a failed ping before backing off.",
    ),
    Key(
        "interfaces.<ifname>.protocol",
        "ipv4, ipv6 or dualstack",
        "ipv4",
        "Which of the interface's own public endpoints to discover and publish.",
    ),
    Key(
        "interfaces.<ifname>.port_mapping",
        "auto, off, pcp, natpmp or upnp",
        "auto",
        "Ask the router to forward WireGuard's UDP port (and only that port): auto probes PCP, "
        "NAT-PMP and UPnP IGD in parallel and uses the first that answers; a protocol name "
        "uses only that one; off never asks. Behind a dependent (symmetric) NAT the mapped "
        "endpoint is what gets published.",
        "stunmeshd only; stunmesh-go ignores the key.",
    ),
    Key(
        "interfaces.<ifname>.port_mapping_lifetime",
        DURATION + ", 2s to 24h",
        "2h",
        "The mapping lifetime asked of the router; it is renewed at half the granted lifetime "
        "and deleted when stunmeshd stops or the interface goes.",
        "stunmeshd only; stunmesh-go ignores the key.",
    ),
    Key(
        "interfaces.<ifname>.proxy",
        "mapping",
        "",
        "Accepted and ignored, with a warning: stunmeshd has no proxy mode; it shares "
        "WireGuard's own UDP port through a raw socket.",
        "Used by stunmesh-go on other platforms.",
    ),
    Key(
        "interfaces.<ifname>.listen_interfaces",
        "list",
        "",
        "Accepted and ignored, with a warning: the raw socket sees STUN answers on every "
        "interface.",
        "Used by stunmesh-go on other platforms.",
    ),
    Key(
        "interfaces.<ifname>.listen_default_route",
        "boolean",
        "",
        "Accepted and ignored, with a warning (as listen_interfaces).",
        "Used by stunmesh-go on other platforms.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.public_key",
        "base64 of 32 bytes",
        "",
        "The peer's WireGuard public key, as wg show prints it. Required. The peer must also "
        "be on the WireGuard interface (stunmeshd only sets its endpoint).",
        "A peer with a missing or invalid key, an undefined plugin or the key of an earlier "
        "peer is skipped (state disabled, with the reason; --check exits 1), as stunmesh-go "
        "skips it; the other peers run.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.plugin",
        "a name under plugins",
        "",
        "The store through which this peer's endpoints are exchanged. Required; both sides "
        "must use the same store.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.protocol",
        "ipv4, ipv6, prefer_ipv4 or prefer_ipv6",
        "ipv4",
        "Which of the peer's endpoints to use; the prefer_ forms fall back to the other family "
        "when the preferred path is broken.",
        "stunmesh-go does not fall back.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.description",
        "text",
        "",
        "Free text about the peer, shown by stunmeshctl show and on D-Bus (Description).",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.ping.enabled",
        "boolean",
        "false",
        "Check the tunnel by ICMP echo to ping.target. Without a target the peer is not "
        "monitored (a warning), as in stunmesh-go.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.ping.target",
        "IP address or host name",
        "",
        "An address inside the tunnel. A host name is resolved (IPv4, as stunmesh-go does) "
        "off the event loop and looked up again every 5 minutes.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.ping.interval",
        DURATION,
        "ping_monitor.interval",
        "This peer's ping interval.",
    ),
    Key(
        "interfaces.<ifname>.peers.<label>.ping.timeout",
        DURATION,
        "ping_monitor.timeout",
        "This peer's ping timeout.",
    ),
    Key(
        "plugins.<name>.type",
        "builtin, exec or shell",
        "",
        "builtin: a store in stunmeshd (name says which); exec: a program speaking JSON on "
        "stdin/stdout; shell: a program reading STUNMESH_* assignments. The protocols are in "
        "docs/wire-format.md. Required.",
    ),
    Key("plugins.<name>.name", "cloudflare or opendht", "", "For type builtin: which store."),
    Key(
        "plugins.<name>.command",
        "program",
        "",
        "For exec and shell: the program, run without a shell.",
    ),
    Key("plugins.<name>.args", "list of strings", "", "For exec and shell: its arguments."),
    Key(
        "plugins.<name>.dedup",
        "boolean",
        "false",
        "Skip publishing an endpoint that has not changed since the last successful write "
        "(saves API quota). Ignored, with a warning, for OpenDHT, whose values expire.",
        "Any string but true reads as false (yes too), as in stunmesh-go.",
    ),
    Key(
        "plugins.<name>.timeout",
        DURATION + " or seconds",
        "120s for exec and shell, 15s for opendht, 10s for cloudflare",
        "How long one store operation may take; a plugin program is killed after it. A call "
        "over 10 s is logged as slow.",
        "stunmesh-go has no limit for plugins (its contrib OpenDHT scripts fail over in 15 s "
        "steps); its opendht and cloudflare stores wait 15 s and 10 s.",
    ),
    Key("plugins.<name>.zone", "DNS zone", "", "cloudflare: the zone, e.g. example.com."),
    Key(
        "plugins.<name>.token",
        "secret",
        "",
        "cloudflare: an API token allowed to edit DNS in the zone. Never logged, never on D-Bus; "
        "keep the file readable by root only.",
    ),
    Key(
        "plugins.<name>.subdomain",
        "DNS label",
        "",
        "cloudflare: records are <key>.<subdomain>.<zone> (or <key>.<zone> without it).",
    ),
    Key(
        "plugins.<name>.api_base",
        "URL",
        "https://api.cloudflare.com/client/v4",
        "cloudflare: the API's base URL (for tests and API gateways).",
        "stunmeshd only.",
    ),
    Key(
        "plugins.<name>.endpoint",
        "URL",
        "",
        "opendht: an OpenDHT proxy (dhtnode --proxyserver), tried first.",
    ),
    Key(
        "plugins.<name>.endpoints",
        "list of URLs",
        "",
        "opendht: more proxies, tried in order after endpoint on errors.",
    ),
    Key(
        "plugins.<name>.magic",
        "text",
        "stunmesh-v1",
        "opendht: the envelope tag that marks our values.",
    ),
)

SECTIONS = {
    "refresh_interval": "Top level",
    "log": "Top level",
    "stun": "STUN",
    "ping_monitor": "Ping defaults",
    "interfaces": "Interfaces and peers",
    "plugins": "Stores (plugins)",
}
