"""INSIDE the VM: the installed package as a system service under systemd (PID 1).

Run by tests/vm/test_vm.py, in file order: install, the disabled service, start, reload,
journal, hardening, stop, D-Bus activation once enabled. Kernel WireGuard (``wg0``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import signal
import subprocess
import termios
import time
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from tests.vm.guest import (
    BUS_NAME,
    CONFIG,
    IFACE,
    OBJECT,
    UNIT,
    busctl_json,
    device_property,
    ensure_installed,
    install_package,
    journal,
    manager_property,
    remove_dropin,
    sh,
    unit_property,
    wait_for,
    write_dropin,
)

PEER_KEY = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
DEFAULT_REFRESH_US = 600 * 1_000_000  # "10m"


def write_config(refresh: str = "10m") -> None:
    # no network in the VM: the STUN server is unreachable, which the daemon must survive;
    # "bogus_key" is an unknown key, which the daemon reports as a warning
    CONFIG.parent.mkdir(mode=0o700, exist_ok=True)
    CONFIG.write_text(
        f"""refresh_interval: "{refresh}"
bogus_key: 1
stun:
  addresses: ["192.0.2.1:3478"]
interfaces:
  wg0:
    peers:
      other:
        public_key: "{PEER_KEY}"
        plugin: dir
plugins:
  dir:
    type: shell
    command: /bin/true
"""
    )
    os.chmod(CONFIG, 0o600)


@pytest.fixture(scope="module", autouse=True)
def kernel_wg0():
    """A kernel WireGuard device in the VM's own network namespace."""
    sh("modprobe", "wireguard")
    key = base64.b64encode(bytes(PrivateKey.generate())).decode()
    sh("ip", "link", "add", "wg0", "type", "wireguard")
    sh("wg", "set", "wg0", "private-key", "/dev/stdin", "listen-port", "51820",
       "peer", PEER_KEY, "allowed-ips", "198.19.0.2/32", input=key)  # fmt: skip
    sh("ip", "link", "set", "wg0", "up")
    yield
    sh("ip", "link", "del", "wg0", check=False)


def call_manager(method: str, *sig_args: str, check: bool = True):
    return sh("busctl", "call", BUS_NAME, OBJECT, IFACE, method, *sig_args, check=check)


def test_package_installs_disabled_and_stopped() -> None:
    install_package()
    # like Debian's network services that need a local config first: nothing enabled/started
    assert sh("systemctl", "is-enabled", UNIT, check=False).stdout.strip() == "disabled"
    assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() == "inactive"
    assert sh("/usr/bin/stunmeshd", "--version").stdout.startswith("stunmeshd ")


def test_disabled_service_is_not_started_by_the_bus() -> None:
    """Decision: installed but disabled = not bus-activatable. The activation file names the
    unit's alias, which exists only once the admin enabled the unit (as for NetworkManager or
    systemd-networkd), so a client's call fails with systemd's answer instead of starting a
    service that has no config yet."""
    write_config()
    proc = call_manager("GetDevices", check=False)
    assert proc.returncode != 0
    assert "dbus-io.github.stunmeshd.StunMesh1.service not found" in proc.stderr
    assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() == "inactive"


def test_start_serves_the_bus_with_the_kernel_device() -> None:
    sh("systemctl", "start", UNIT)
    assert sh("systemctl", "is-active", UNIT).stdout.strip() == "active"
    status = sh("busctl", "status", BUS_NAME).stdout
    main_pid = unit_property("MainPID")
    assert f"PID={main_pid}\n" in status
    assert "Unit=stunmeshd.service" in status
    assert device_property("wg0", "Backend") == "kernel"
    assert device_property("wg0", "ListenPort") == 51820


def test_reload_rereads_the_config_through_the_reload_method() -> None:
    pid = unit_property("MainPID")
    assert manager_property("RefreshInterval") == DEFAULT_REFRESH_US
    assert "Reload" in unit_property("ExecReload")
    write_config(refresh="7m")
    sh("systemctl", "reload", UNIT)
    assert manager_property("RefreshInterval") == 420 * 1_000_000
    assert unit_property("MainPID") == pid  # re-read, not restarted
    assert sh("systemctl", "is-active", UNIT).stdout.strip() == "active"


def test_journal_entries_carry_the_log_levels() -> None:
    def warning_seen():
        # the daemon's own lines (ExecStartPre's --check prints the same warning as plain text)
        pid = unit_property("MainPID")
        return [e for e in journal() if e.get("_PID") == pid and "bogus_key" in e["MESSAGE"]]

    warnings = wait_for("the unknown-key warning in the journal", warning_seen)
    assert {e["PRIORITY"] for e in warnings} == {"4"}
    entries = [e for e in journal() if e.get("_PID") == unit_property("MainPID")]
    infos = [e for e in entries if e["MESSAGE"].startswith("INFO ")]
    assert infos and all(e["PRIORITY"] == "6" for e in infos)
    assert not [e for e in entries if e["MESSAGE"].startswith("<")]  # prefixes were parsed
    # what an admin filters on
    filtered = sh("journalctl", "-b", "-u", UNIT, "-p", "warning", "-o", "cat").stdout
    assert "bogus_key" in filtered and "INFO " not in filtered


def test_security_exposure_is_at_most_2() -> None:
    out = sh("systemd-analyze", "security", "--no-pager", UNIT).stdout
    line = next(x for x in out.splitlines() if "Overall exposure level" in x)
    level = float(line.split(":", 1)[1].split()[0])
    print(f"systemd-analyze security {UNIT}: {level}")
    assert level <= 2.0, out


def test_stop_is_clean_within_5_seconds() -> None:
    # a stop that overran 5 s would end in SERVICE_RESULT=timeout and a SIGKILL; systemd hands
    # the outcome to ExecStopPost (the "+" runs it outside the sandbox, to write the file)
    result = Path("/run/stunmeshd-stop-result")
    result.unlink(missing_ok=True)
    write_dropin(
        "stop-check",
        "[Service]\nTimeoutStopSec=5s\n"
        f"ExecStopPost=+/bin/sh -c 'echo $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS > {result}'\n",
    )
    try:
        sh("systemctl", "start", UNIT)
        sh("systemctl", "stop", UNIT)
        assert result.read_text().split() == ["success", "exited", "0"]
        assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() == "inactive"
    finally:
        remove_dropin("stop-check")


def test_enabled_service_is_started_by_a_bus_call() -> None:
    sh("systemctl", "enable", UNIT)
    try:
        assert sh("systemctl", "is-active", UNIT, check=False).stdout.strip() == "inactive"
        devices = busctl_json("call", BUS_NAME, OBJECT, IFACE, "GetDevices")
        assert len(devices[0]) == 1
        assert sh("systemctl", "is-active", UNIT).stdout.strip() == "active"
    finally:
        sh("systemctl", "disable", "--now", UNIT)


def test_active_local_user_may_refresh_through_polkit() -> None:
    """polkit's allow_active (Refresh: yes) through the real polkitd and a real logind
    session: a login on tty2 (PAM "login", so pam_systemd registers it on seat0), made the
    foreground VT. The same user outside that session is refused (allow_any: auth_admin)."""
    sh("useradd", "--create-home", "smtester")
    out = Path("/home/smtester/call")  # the user's own directory: written by the session
    call = f"busctl call {BUS_NAME} {OBJECT} {IFACE} Refresh a{{sv}} 0"
    sh("systemctl", "start", UNIT)
    try:
        refused = sh("runuser", "-u", "smtester", "--", *call.split(), check=False)
        assert refused.returncode != 0
        # org.freedesktop.DBus.Error.AccessDenied, as busctl renders it; the bus policy lets
        # everyone send to the interface, so it is the daemon's polkit check that refused
        assert "Access denied" in refused.stderr

        sh("/bin/busybox", "chvt", "2")
        # HUP ignored: logind setting up the VT session may hang the tty up under the shell
        # (seen once in ~4 runs: killed by SIGHUP before writing anything)
        script = (
            "trap '' HUP; "
            f"loginctl show-session $XDG_SESSION_ID -p Active -p Seat -p Remote > {out}; "
            f"{call} >> {out} 2>&1; echo rc=$? >> {out}"
        )
        login = sh(
            "systemd-run", "--wait", "--collect", "--unit=smtester-login",
            "-p", "PAMName=login", "-p", "User=smtester", "-p", "TTYPath=/dev/tty2",
            "-p", "StandardInput=tty", "-p", "StandardOutput=tty",
            "/bin/sh", "-c", script,
        )  # fmt: skip
        log = sh("journalctl", "-b", "-u", "smtester-login", "-o", "cat", check=False).stdout
        assert out.exists(), f"{login.stdout}{login.stderr}\n{log}"
        lines = out.read_text().splitlines()
        assert {"Active=yes", "Seat=seat0", "Remote=no"} <= set(lines), lines
        assert lines[-1] == "rc=0", lines
    finally:
        sh("systemctl", "stop", UNIT)


# ---- an administrator's password, typed into pkttyagent ------------------------------------

ADMIN, ADMIN_PASSWORD = "smadmin", "correct horse battery staple"
CALLER = "smcaller"  # unprivileged, and in no session: Reload is auth_admin_keep for it
RELOAD_ACTION = "io.github.stunmeshd.StunMesh1.reload"
# what a D-Bus client without stunmeshctl sees: the error's name (stunmeshctl words it)
RAW_RELOAD = f"""
import asyncio
from dbus_fast import BusType, Message, MessageFlag
from dbus_fast.aio import MessageBus

async def main():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    reply = await bus.call(Message(
        destination="{BUS_NAME}", path="{OBJECT}", interface="{IFACE}", member="Reload",
        signature="a{{sv}}", body=[{{}}], flags=MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION))
    print("reply:", reply.error_name or "ok")

asyncio.run(main())
"""


def with_tty_agent(command: str) -> str:
    """A shell script for the caller: pkttyagent registered for the shell's own process, which
    then becomes ``command`` (exec keeps the pid, so polkitd finds the agent for the bus name's
    process), the way systemctl runs pkttyagent for itself. The agent's pid goes to a file so
    that the test can stop it."""
    return (
        "set -e; fifo=$(mktemp -u /tmp/smagent.XXXXXX); mkfifo $fifo; "
        "pkttyagent --process $$ --notify-fd 3 3>$fifo & echo $! > /tmp/smagent.pid; "
        "cat $fifo; rm $fifo; "  # returns once the agent is registered (it closes fd 3)
        f"exec {command}"
    )


def echo_off(master: int) -> bool:
    """Whether the terminal stopped echoing: an agent that prompted for a password turns echo
    off with TCSAFLUSH, which throws away anything typed before; so the answer waits for it."""
    return not termios.tcgetattr(master)[3] & termios.ECHO


def converse(argv: list[str], answers: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` on a new pty that is its controlling terminal (pkttyagent reads the
    password from /dev/tty, as on a login); type each answer once its prompt shows and the
    terminal stopped echoing. Returns the exit status and everything the terminal showed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    shown, pending = b"", dict(answers)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"{argv[0]} still running; screen:\n{shown!r}"
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown += os.read(master, 4096)
                except OSError:  # EIO: nothing has the terminal open any more
                    break
            for prompt in [p for p in pending if p.encode() in shown]:
                if echo_off(master):
                    os.write(master, pending.pop(prompt).encode() + b"\n")
        status = proc.wait(timeout=10)
        while select.select([master], [], [], 0.2)[0]:
            try:
                shown += os.read(master, 4096)
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        agent = Path("/tmp/smagent.pid")
        if agent.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(agent.read_text()), signal.SIGTERM)
            agent.unlink()
    return status, shown.decode(errors="replace")


def test_admin_password_typed_into_pkttyagent_authorizes_reload() -> None:
    """auth_admin_keep through the real polkitd: an unprivileged caller outside any session
    calls Reload allowing interactive authorization; polkitd asks the pkttyagent registered
    for the caller's process, which prompts on the caller's terminal for the password of an
    administrator (Debian: group sudo). A wrong password is AccessDenied and the daemon stays
    on the bus; the right one, typed into the agent stunmeshctl starts itself on a terminal,
    runs the reload."""
    ensure_installed()
    if not CONFIG.exists():
        write_config()
    sh("useradd", "--create-home", "--groups", "sudo", ADMIN)
    sh("chpasswd", input=f"{ADMIN}:{ADMIN_PASSWORD}\n")
    sh("useradd", "--create-home", CALLER)
    python = "/usr/lib/stunmeshd/bin/python"
    sh("systemctl", "start", UNIT)
    try:
        wait_for("the daemon on the bus", lambda: sh("busctl", "status", BUS_NAME))
        raw = with_tty_agent(f"{python} -c '{RAW_RELOAD}'")
        status, shown = converse(
            ["runuser", "-u", CALLER, "--", "/bin/sh", "-c", raw], {"Password:": "wrong"}
        )
        assert f"AUTHENTICATING FOR {RELOAD_ACTION}" in shown, shown
        assert ADMIN in shown, shown  # the one administrator: no identity to choose
        assert "reply: org.freedesktop.DBus.Error.AccessDenied" in shown, shown
        assert status == 0, shown
        assert sh("systemctl", "is-active", UNIT).stdout.strip() == "active"
        sh("busctl", "status", BUS_NAME)  # still owns its name

        # stunmeshctl on a terminal starts pkttyagent for itself (stunmeshd.ctl.agent)
        reloads = len([e for e in journal() if "configuration reloaded" in e["MESSAGE"]])
        status, shown = converse(
            ["runuser", "-u", CALLER, "--", "stunmeshctl", "reload"], {"Password:": ADMIN_PASSWORD}
        )
        assert f"AUTHENTICATING FOR {RELOAD_ACTION}" in shown, shown
        assert status == 0, shown
        assert "configuration reloaded" in shown, shown
        wait_for(
            "the reload in the journal",
            lambda: (
                len([e for e in journal() if "configuration reloaded" in e["MESSAGE"]]) > reloads
            ),
        )
    finally:
        sh("systemctl", "stop", UNIT)
