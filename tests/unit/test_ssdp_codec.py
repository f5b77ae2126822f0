"""The SSDP search codec (UPnP Device Architecture 2.0 §1.3.2): what we send, what we accept."""

from __future__ import annotations

import random

import pytest

from stunmeshd.errors import PortMapParseError
from stunmeshd.portmap import ssdp

IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"

# an answer with the headers miniupnpd 2.3 sends (minissdp.c: SendSSDPResponse)
MINIUPNPD_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"CACHE-CONTROL: max-age=120\r\n"
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6b5a1bd0::"
    b"urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    b"EXT:\r\n"
    b"SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    b"LOCATION: http://198.18.1.1:38867/rootDesc.xml\r\n"
    b'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n'
    b"01-NLS: 1\r\n"
    b"BOOTID.UPNP.ORG: 1\r\n"
    b"CONFIGID.UPNP.ORG: 1337\r\n"
    b"\r\n"
)


def test_the_search_is_the_spec_layout() -> None:
    assert ssdp.search_request(IGD) == (
        b"M-SEARCH * HTTP/1.1\r\n"
        b"HOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\n'
        b"MX: 1\r\n"
        b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
        b"\r\n"
    )


def test_an_answer_gives_its_headers_by_lower_case_name() -> None:
    headers = ssdp.parse_response(MINIUPNPD_ANSWER)
    assert headers["location"] == "http://198.18.1.1:38867/rootDesc.xml"
    assert headers["st"] == IGD
    assert headers["ext"] == ""
    assert headers["usn"].startswith("uuid:3d3cec3a-")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe garbage",
        b"HTTP/1.1 200 OK\r\nLOCATION: http://x/\r\n",  # no end of headers
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n",  # an announcement
        b"M-SEARCH * HTTP/1.1\r\n\r\n",  # another host's search
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n LOCATION: folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (ssdp.MAX_HEADERS + 1) + b"\r\n",
    ],
)
def test_malformed_answers_are_refused(data: bytes) -> None:
    with pytest.raises(PortMapParseError):
        ssdp.parse_response(data)


def test_random_bytes_never_raise_anything_but_a_parse_error() -> None:
    rng = random.Random(14)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        if rng.random() < 0.5:
            data = b"HTTP/1.1 200 OK\r\n" + data + b"\r\n\r\n"
        try:
            ssdp.parse_response(data)
        except PortMapParseError:
            pass
