"""The one endpoint policy: what may be a peer's public endpoint, from STUN or from a record."""

from __future__ import annotations

import ipaddress
import shutil

import pytest

from stunmeshd.endpoint_policy import refusal
from stunmeshd.lab import topology


@pytest.mark.parametrize(
    ("address", "port", "reason"),
    [
        ("0.0.0.0", 51820, "unspecified"),
        ("0.1.2.3", 51820, "unspecified"),
        ("::", 51820, "unspecified"),
        ("127.0.0.1", 51820, "loopback"),
        ("127.255.0.1", 51820, "loopback"),
        ("::1", 51820, "loopback"),
        ("169.254.1.1", 51820, "link-local"),
        ("fe80::1", 51820, "link-local"),
        ("224.0.0.1", 51820, "multicast"),
        ("239.255.255.250", 1900, "multicast"),
        ("ff02::1", 51820, "multicast"),
        ("255.255.255.255", 51820, "broadcast"),
        ("240.0.0.1", 51820, "class E"),
        ("254.1.2.3", 51820, "class E"),
        ("::ffff:255.255.255.255", 51820, "IPv4-mapped"),
        ("::ffff:203.0.113.7", 51820, "IPv4-mapped"),
        ("::203.0.113.7", 51820, "reserved"),
        ("203.0.113.7", 0, "port 0"),
        ("2001:db8::7", 0, "port 0"),
    ],
)
def test_addresses_no_peer_can_have_are_refused_with_the_reason(
    address: str, port: int, reason: str
) -> None:
    text = refusal(ipaddress.ip_address(address), port)
    assert text is not None and reason in text


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "2606:4700::1111",
        "10.1.2.3",  # private: a STUN server inside a LAN or VPN
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT: the public side of a carrier's NAT
        "fd00::1",  # unique local
        "198.18.1.2",  # benchmarking range, the lab's LANs
        "198.51.100.10",  # documentation ranges, the lab's "internet"
        "203.0.113.20",
        "2001:db8:1::2",
    ],
)
def test_private_cgnat_and_documentation_ranges_are_accepted(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), 51820) is None


def test_every_address_the_lab_hands_out_is_accepted() -> None:
    """The lab's sites must be able to publish what STUN tells them."""
    lab = topology.Lab(ipv6=True)  # builds nothing until started, but makes its workdir
    shutil.rmtree(lab.workdir)
    addresses = [topology.WAN_A_IP, topology.WAN_B_IP, topology.WAN_A_IP6, topology.WAN_B_IP6]
    for site in lab.sites:
        addresses += [site.public_ip, site.lan_ip, site.lan_ip6, site.router_ip6, site.tunnel_ip]
    assert addresses
    for address in addresses:
        assert refusal(ipaddress.ip_address(address), 51820) is None, address
