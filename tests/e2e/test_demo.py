"""``make demo`` as a person sees it: the topology first, lines in time order with local
clock times, names instead of object paths, whole reasons, and no colour under NO_COLOR."""

from __future__ import annotations

import asyncio
import io
import re
import sys

import pytest

from stunmeshd.lab.demo import fields_of, human_value, use_color

LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \+\s*(\d+\.\d\d)s\s+\[(A|B|A\+B|!)\] (.*)$")


def test_log_fields_keep_whole_reasons() -> None:
    msg = (
        "peer failed iface=wg0 peer=hostB reason=no handshake 15 s after applying the endpoint: "
        "our NAT's mapping is address-dependent key=abc"
    )
    assert fields_of(msg) == (
        "peer=hostB reason=no handshake 15 s after applying the endpoint: "
        "our NAT's mapping is address-dependent"
    )


def test_no_color_is_honoured() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color(Tty(), {}) is True
    assert use_color(Tty(), {"NO_COLOR": "1"}) is False
    assert use_color(io.StringIO(), {}) is False


def test_times_become_clock_times() -> None:
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.123", human_value("2026-12-04T20:33:00.123Z"))
    assert human_value(None) == "never" and human_value(["wg0/hostB"]) == "wg0/hostB"


@pytest.mark.root
async def test_demo_reads_in_time_order_on_a_terminal_without_colour() -> None:
    command = f"{sys.executable} -m stunmeshd.lab.demo"
    proc = await asyncio.create_subprocess_exec(
        "script", "-qec", command, "/dev/null",
        env={"NO_COLOR": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "xterm"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode().replace("\r\n", "\n")
    assert proc.returncode == 0, text
    assert "\x1b[" not in text  # a terminal, but NO_COLOR
    # the picture comes first, with every hop's address
    head = text.split("\n\n")[1]
    for address in ("198.18.1.2", "198.18.1.1", "198.51.100.10", "198.51.100.1", "203.0.113.1",
                    "203.0.113.20", "198.18.2.1", "198.18.2.2", ":3478"):  # fmt: skip
        assert address in head, (address, head)
    events = [m.groups() for m in map(LINE.match, text.splitlines()) if m]
    assert len(events) > 10, text
    clocks = [e[0] for e in events]
    assert clocks == sorted(clocks), text  # in time order (one day: the demo takes seconds)
    elapsed = [float(e[1]) for e in events]
    assert elapsed == sorted(elapsed), text
    bodies = "\n".join(e[3] for e in events)
    assert "DeviceAdded wg0" in bodies and "PeerAdded wg0/hostB" in bodies
    assert "Devices/" not in bodies and "Peers/" not in bodies  # names, not object paths
    assert not re.search(r"\b1\d{12,}\b", bodies), bodies  # no raw epoch (milli/micro)seconds
    assert "tunnel up" in bodies and "through the tunnel: replies" in bodies
