"""The rtnetlink reader of NetWatch: the fields it needs, and no crash on anything else."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from stunmeshd.netwatch import (
    IFADDRMSG,
    IFINFOMSG,
    IFLA_IFNAME,
    NLMSG_ERROR,
    NLMSG_HDR,
    RTATTR,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMSG,
    NetWatch,
    RtEvent,
    parse,
)

PORT = 4242


def message(kind: int, body: bytes, *, seq: int = 0, pid: int = 0) -> bytes:
    padded = body + b"\0" * (-len(body) % 4)
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), kind, 0, seq, pid) + padded


def link(index: int, name: str, **kw: int) -> bytes:
    raw = name.encode() + b"\0"
    attr = RTATTR.pack(RTATTR.size + len(raw), IFLA_IFNAME) + raw + b"\0" * (-len(raw) % 4)
    return message(RTM_NEWLINK, IFINFOMSG.pack(0, 1, index, 0, 0) + attr, **kw)


def test_the_fields_netwatch_needs_are_read() -> None:
    data = (
        link(7, "wg0")
        + message(RTM_NEWADDR, IFADDRMSG.pack(2, 24, 0, 0, 7))
        + message(RTM_DELROUTE, RTMSG.pack(2, 0, 0, 0, 254, 3, 0, 1, 0))
    )
    assert list(parse(data)) == [
        RtEvent(RTM_NEWLINK, index=7, name="wg0"),
        RtEvent(RTM_NEWADDR, index=7),
        RtEvent(RTM_DELROUTE, dst_len=0, table=254),
    ]


def test_only_replies_to_our_own_dump_count_as_the_dump() -> None:
    ours = link(3, "eth0", seq=1, pid=PORT)
    someone_elses = link(4, "eth1", seq=1, pid=999)  # another tool that also starts at 1
    assert [e.dump for e in parse(ours + someone_elses, PORT)] == [True, False]


def test_a_dumped_link_is_known_but_not_reported_as_new() -> None:
    links: list[tuple[str, bool]] = []
    watch = NetWatch(lambda name, present: links.append((name, present)), lambda _r: None)
    for event in parse(link(3, "eth0", seq=1, pid=PORT) + link(5, "wg0"), PORT):
        watch._dispatch(event)
    assert links == [("wg0", True)]


def test_an_error_reply_raises_oserror() -> None:
    data = message(NLMSG_ERROR, struct.pack("=i", -105) + b"\0" * 16)
    try:
        list(parse(data))
    except OSError as exc:
        assert exc.errno == 105
    else:
        raise AssertionError("no OSError")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_garbage_never_crashes_the_reader(data: bytes) -> None:
    try:
        events = list(parse(data, PORT))
    except OSError:
        return  # a well-formed error reply
    assert all(isinstance(e, RtEvent) for e in events)
