"""Which endpoint is published (mapping or STUN), and which SSDP answers are believed."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from stunmeshd.model import NatMapping
from stunmeshd.portmap.client import Gateway, ssdp_location
from stunmeshd.portmap.device import SOURCE_MAPPING, SOURCE_STUN, choose_endpoints

V6 = "[2001:db8:1::2]:51820"
GW = Gateway("198.18.1.1", "198.18.1.2", ipaddress.IPv4Network("198.18.1.0/24"))


@pytest.mark.parametrize(
    ("stun", "mapped", "nat", "published", "source"),
    [
        # behind a symmetric NAT STUN's port is useless: the mapping wins
        ("192.0.3.10:40123", "192.0.3.10:51820", NatMapping.ADDRESS_AND_PORT_DEPENDENT,
         "192.0.3.10:51820", SOURCE_MAPPING),
        ("192.0.3.10:40123", "192.0.3.10:51820", NatMapping.ADDRESS_DEPENDENT,
         "192.0.3.10:51820", SOURCE_MAPPING),
        # an endpoint-independent NAT: STUN's answer is proven, the router's is not
        ("192.0.3.10:40123", "192.0.3.10:51820", NatMapping.ENDPOINT_INDEPENDENT,
         "192.0.3.10:40123", SOURCE_STUN),
        ("192.0.3.10:40123", "192.0.3.10:51820", NatMapping.UNKNOWN,
         "192.0.3.10:40123", SOURCE_STUN),
        # both agree: it is the mapping that holds it open
        ("192.0.3.10:51820", "192.0.3.10:51820", NatMapping.ENDPOINT_INDEPENDENT,
         "192.0.3.10:51820", SOURCE_MAPPING),
        # no mapping: STUN
        ("192.0.3.10:40123", None, NatMapping.ADDRESS_AND_PORT_DEPENDENT,
         "192.0.3.10:40123", SOURCE_STUN),
    ],
)  # fmt: skip
def test_choice_of_the_published_ipv4_endpoint(
    stun: str, mapped: str | None, nat: NatMapping, published: str, source: str
) -> None:
    chosen, got_source = choose_endpoints({"ipv4": stun, "ipv6": V6}, mapped, nat)
    assert chosen == {"ipv4": published, "ipv6": V6}  # IPv6 is never the mapping's
    assert got_source == source


def test_no_stun_ipv4_but_a_mapping_publishes_the_mapping() -> None:
    chosen, source = choose_endpoints({"ipv6": V6}, "192.0.3.10:51820", NatMapping.UNKNOWN)
    assert chosen == {"ipv4": "192.0.3.10:51820", "ipv6": V6} and source == SOURCE_MAPPING


def test_ssdp_answer_from_the_lan_is_believed() -> None:
    headers = {"_host": "198.18.1.1", "location": "http://198.18.1.1:5000/rootDesc.xml"}
    assert ssdp_location(GW, headers) == "http://198.18.1.1:5000/rootDesc.xml"


@pytest.mark.parametrize(
    "headers",
    [
        {"_host": "203.0.113.9", "location": "http://198.18.1.1:5000/rootDesc.xml"},
        {"_host": "198.18.1.1", "location": "http://203.0.113.9:5000/rootDesc.xml"},
        {"_host": "198.18.1.1", "location": "http://example.com:5000/rootDesc.xml"},
        {"_host": "198.18.1.1", "location": "file:///etc/passwd"},
        {"_host": "198.18.1.1", "location": "http://[::1"},
        {"_host": "198.18.1.1"},
        {},
    ],
)
def test_ssdp_answers_from_or_to_outside_the_lan_are_refused(
    headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert ssdp_location(GW, headers) is None
    assert "SSDP answer refused" in caplog.text
