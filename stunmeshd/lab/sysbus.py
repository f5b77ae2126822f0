"""A private system bus with a real polkitd, and an unprivileged caller (docs/testbed.md).

- ``PrivateBus``: ``dbus-daemon`` with a ``<type>system</type>`` config on a unix socket in a
  fresh directory, default-deny like the real system bus, including polkit's bus policy and the
  project's own ``dbus/*.conf`` (through ``<includedir>``), so the tests exercise the policy
  file that ships.
- ``start_polkit()``: ``polkitd`` against that bus inside ``unshare --mount``, with a private
  actions directory (our ``.policy``) bind-mounted over ``/usr/share/polkit-1/actions`` and a
  rules directory over ``/etc/polkit-1/rules.d``: nothing on the machine is changed.

Only unix sockets are used: nothing touches any network.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import tempfile
from pathlib import Path

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from stunmeshd.lab.resource import Resource

REPO = Path(__file__).resolve().parents[2]  # the checkout
POLICY_DIR = REPO / "dbus"
POLKIT_POLICY = REPO / "polkit" / "io.github.stunmeshd.StunMesh1.policy"
POLKIT_BUS_CONF = Path("/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf")
POLKITD = Path("/usr/lib/polkit-1/polkitd")
PYTHON = REPO / ".venv" / "bin" / "python"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{polkit_conf}</include>
  <includedir>{policy_dir}</includedir>
  <limit name="max_connections_per_user">1024</limit>
  <limit name="max_replies_per_connection">4096</limit>
</busconfig>
"""


async def name_has_owner(bus: MessageBus, name: str) -> bool:
    """Whether ``name`` has an owner on ``bus`` (False while the bus cannot answer)."""
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="NameHasOwner",
            signature="s",
            body=[name],
        )
    )
    return (
        reply is not None
        and reply.message_type is MessageType.METHOD_RETURN
        and bool(reply.body[0])
    )


class PrivateBus(Resource):
    """A system-type dbus-daemon of our own; ``address`` is what clients and the daemon use."""

    def __init__(self, *, policy_dir: Path = POLICY_DIR) -> None:
        self.policy_dir = policy_dir
        self.workdir = Path(tempfile.mkdtemp(prefix="smd-bus-"))
        self.workdir.chmod(0o755)  # the unprivileged test user must reach the socket
        self.socket = self.workdir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.rules_dir = self.workdir / "rules.d"
        self.actions_dir = self.workdir / "actions"
        self.daemon: asyncio.subprocess.Process | None = None
        self.polkitd: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        config = self.workdir / "bus.conf"
        config.write_text(
            BUS_CONFIG.format(
                socket=self.socket, polkit_conf=POLKIT_BUS_CONF, policy_dir=self.policy_dir
            )
        )
        with (self.workdir / "dbus-daemon.log").open("ab") as log:  # it warns about fd limits
            self.daemon = await asyncio.create_subprocess_exec(
                "dbus-daemon",
                f"--config-file={config}",
                "--nofork",
                "--print-address=1",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.daemon.stdout is not None
        line = await asyncio.wait_for(self.daemon.stdout.readline(), 10)
        if not line:
            raise RuntimeError("dbus-daemon did not start")

    async def kill(self) -> None:
        """The bus daemon dies (SIGKILL): every connection is lost; the socket file stays."""
        if self.daemon is not None and self.daemon.returncode is None:
            self.daemon.kill()
            await self.daemon.wait()

    async def restart(self) -> None:
        """A new bus daemon at the same address, as after ``systemctl restart dbus`` (polkitd,
        which dies with its bus, comes back too)."""
        await self.kill()
        polkitd, self.polkitd = self.polkitd, None
        if polkitd is not None:
            if polkitd.returncode is None:
                polkitd.terminate()
            await polkitd.wait()
        self.socket.unlink(missing_ok=True)
        await self.start()
        if polkitd is not None:
            await self.start_polkit()

    async def start_polkit(self, rules: dict[str, str] | None = None) -> None:
        """polkitd on this bus with our actions and ``rules`` (file name -> JavaScript)."""
        self.actions_dir.mkdir(mode=0o755, exist_ok=True)
        self.rules_dir.mkdir(mode=0o755, exist_ok=True)
        shutil.copy(POLKIT_POLICY, self.actions_dir / POLKIT_POLICY.name)
        (self.actions_dir / POLKIT_POLICY.name).chmod(0o644)
        for name, text in (rules or {}).items():
            self.add_rule(name, text)
        script = (
            f"mount --bind {shlex.quote(str(self.actions_dir))} /usr/share/polkit-1/actions && "
            f"mount --bind {shlex.quote(str(self.rules_dir))} /etc/polkit-1/rules.d && "
            f"exec {POLKITD} --no-debug"
        )
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.polkitd = await asyncio.create_subprocess_exec(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self.wait_for_name("org.freedesktop.PolicyKit1", timeout=10)

    def add_rule(self, name: str, text: str) -> None:
        path = self.rules_dir / name
        path.write_text(text)
        path.chmod(0o644)

    def remove_rule(self, name: str) -> None:
        (self.rules_dir / name).unlink(missing_ok=True)

    async def connect(self) -> MessageBus:
        return await MessageBus(bus_address=self.address).connect()

    async def wait_for_name(self, name: str, timeout: float = 10.0) -> None:
        bus = await self.connect()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if await name_has_owner(bus, name):
                        return
                    for proc in (self.polkitd, self.daemon):
                        if proc is not None and proc.returncode is not None:
                            raise RuntimeError(f"a bus process exited ({proc.returncode})")
                    await asyncio.sleep(0.02)
        finally:
            bus.disconnect()

    async def close(self) -> None:
        for proc in (self.polkitd, self.daemon):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
