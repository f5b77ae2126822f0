"""stunmeshctl status/show print the router's mapping of WireGuard's port, or why none."""

from __future__ import annotations

from stunmeshd.ctl import view
from tests.unit.test_ctl_view import DEV, NOW, snapshot


def mapped_snapshot(**fields: object) -> view.Snapshot:
    snap = snapshot()
    snap.devices[DEV].update(fields)
    return snap


def test_show_prints_the_mapping_and_where_the_published_endpoint_came_from() -> None:
    snap = mapped_snapshot(
        PortMapping="natpmp",
        PortMappingEndpoint="192.0.3.10:51820",
        PortMappingExpires=int((NOW + 3600) * 1_000_000),
        PortMappingReason="",
        EndpointSource="port-mapping",
    )
    block = view.render_device(snap, DEV, now=NOW)
    assert "Port mapping: 192.0.3.10:51820 by natpmp, expires " in block
    assert "(in 60m)" in block
    assert "Published from: port-mapping" in block
    status = view.render_status(snap)
    assert "port mapped by natpmp to 192.0.3.10:51820" in status


def test_show_says_why_there_is_no_mapping() -> None:
    snap = mapped_snapshot(
        PortMapping="",
        PortMappingEndpoint="",
        PortMappingExpires=0,
        PortMappingReason="no router answered pcp/natpmp/upnp",
        EndpointSource="stun",
    )
    block = view.render_device(snap, DEV, now=NOW)
    assert "Port mapping: none (no router answered pcp/natpmp/upnp)" in block
    assert "Published from: stun" in block
    assert "port mapped" not in view.render_status(snap)


def test_an_older_daemon_without_the_properties_shows_no_line() -> None:
    block = view.render_device(snapshot(), DEV, now=NOW)
    assert "Port mapping" not in block
