"""SSDP search (UPnP Device Architecture 2.0 §1.3.2), sans-IO: the M-SEARCH we send, and the
headers of an answer.

async-upnp-client's own SSDP module parses with aiohttp's HTTP parser, so importing it loads
all of aiohttp (~13 MB) on every probe, even where no internet gateway device exists. The
search is one datagram out and a few header lines back; the library (and aiohttp) is loaded
only once a gateway answered, to read its description and call it (``client.py``).
"""

from __future__ import annotations

from stunmeshd.errors import PortMapParseError

MULTICAST = ("239.255.255.250", 1900)
MAX_HEADERS = 32  # an answer carries about ten


def search_request(search_target: str, *, mx: int = 1) -> bytes:
    """An M-SEARCH for ``search_target``, answers within ``mx`` seconds."""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {MULTICAST[0]}:{MULTICAST[1]}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {mx}\r\n"
        f"ST: {search_target}\r\n"
        "\r\n"
    ).encode("ascii")


def parse_response(data: bytes) -> dict[str, str]:
    """A search answer's headers, names lower-cased. PortMapParseError for anything that is
    not an ``HTTP/1.1 200`` answer with well-formed header lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PortMapParseError("SSDP answer is not UTF-8") from exc
    head, sep, _body = text.partition("\r\n\r\n")
    if not sep:
        raise PortMapParseError("SSDP answer has no end of headers")
    status, *lines = head.split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or parts[1] != "200":
        raise PortMapParseError(f"SSDP answer status {status[:60]!r}")
    if len(lines) > MAX_HEADERS:
        raise PortMapParseError(f"SSDP answer has {len(lines)} header lines")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or not name.isascii():
            raise PortMapParseError(f"SSDP answer header line {line[:60]!r}")
        headers[name.lower()] = value.strip()
    return headers
