"""Network (and mount) namespaces for the lab: run programs, open sockets, run coroutines inside.

Programs enter a namespace through ``nsenter``; sockets and coroutines enter it on a dedicated
thread that calls ``setns(2)`` (network namespaces are per thread, and a socket stays in the
namespace it was created in), so a test can drive code "inside" a lab host from its own loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def _setns_current_thread(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


async def run(
    *argv: str, check: bool = True, input: bytes | None = None, timeout: float = 30.0
) -> str:
    """Run a command to completion and return its stdout (text)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode().strip()}")
    return out.decode()


class Namespace:
    """A named network namespace (``ip netns``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = NETNS_DIR / name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def enter_argv(self) -> list[str]:
        """The command prefix that runs a program inside this namespace."""
        return ["nsenter", f"--net={self.path}", "--"]

    async def create(self) -> None:
        await run("ip", "netns", "add", self.name)
        await run("ip", "-n", self.name, "link", "set", "lo", "up")

    async def delete(self) -> None:
        await run("ip", "netns", "delete", self.name, check=False)

    async def run(
        self, *argv: str, check: bool = True, input: bytes | None = None, timeout: float = 30.0
    ) -> str:
        return await run(*self.enter_argv(), *argv, check=check, input=input, timeout=timeout)

    async def spawn(self, *argv: str, **kw: Any) -> asyncio.subprocess.Process:
        """Start a long-running program inside the namespace (the caller owns the process)."""
        kw.setdefault("stdin", asyncio.subprocess.DEVNULL)
        return await asyncio.create_subprocess_exec(*self.enter_argv(), *argv, **kw)

    async def sysctl(self, key: str, value: str) -> None:
        await self.run("sysctl", "-qw", f"{key}={value}")

    def socket(self, family: int, type: int, proto: int = 0) -> socket.socket:
        """A socket created inside this namespace, usable from any thread or loop."""
        box: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                _setns_current_thread(self.path)
                box.append(socket.socket(family, type, proto))
            except BaseException as exc:  # handed back to the caller below
                box.append(exc)

        worker = threading.Thread(target=make, name=f"netns-socket-{self.name}")
        worker.start()
        worker.join()
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` in a fresh event loop on a thread inside this namespace."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(result)  # type: ignore[arg-type]

        def worker() -> None:
            try:
                _setns_current_thread(self.path)
                result = asyncio.run(fn(*args))  # type: ignore[arg-type]
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        threading.Thread(target=worker, name=f"netns-call-{self.name}", daemon=True).start()
        return await done


class Host(Namespace):
    """A lab host: a network namespace plus its own mount namespace.

    wireguard-go puts its UAPI socket at /run/wireguard/<if>.sock, a path every network
    namespace shares; a private tmpfs there per host keeps two ``wg0`` from clashing.
    """

    def __init__(self, name: str, mount_dir: Path) -> None:
        super().__init__(name)
        self.mount_ns = mount_dir / f"{name}.mnt"

    def enter_argv(self) -> list[str]:
        return ["nsenter", f"--net={self.path}", f"--mount={self.mount_ns}", "--"]

    async def create(self) -> None:
        await super().create()
        self.mount_ns.touch()
        Path("/run/wireguard").mkdir(parents=True, exist_ok=True)
        await run("unshare", f"--mount={self.mount_ns}", "--propagation", "private", "true")
        await self.run("mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", "/run/wireguard")
        await self.run("mount", "-t", "sysfs", "sysfs", "/sys")

    async def delete(self) -> None:
        await run("umount", str(self.mount_ns), check=False)
        self.mount_ns.unlink(missing_ok=True)
        await super().delete()


async def private_mount_dir(path: Path) -> None:
    """Make ``path`` a private bind mount, as ``unshare --mount=FILE`` requires."""
    path.mkdir(parents=True, exist_ok=True)
    await run("mount", "--bind", str(path), str(path))
    await run("mount", "--make-private", str(path))


async def release_mount_dir(path: Path) -> None:
    await run("umount", str(path), check=False)
    shutil.rmtree(path, ignore_errors=True)
