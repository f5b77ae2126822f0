"""A minimal writer for the ``newc`` cpio format the kernel unpacks as an initramfs.

Written here so the VM's initramfs is built without root-owned device nodes on disk and without
running ``cpio``/``mknod``: entries are described, not copied.
"""

from __future__ import annotations

import stat

TRAILER = "TRAILER!!!"


class Cpio:
    """Collects entries; :meth:`finish` returns the archive."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
        self._ino += 1
        self._out += header + encoded
        self._pad()
        self._out += data
        self._pad()

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry(TRAILER, 0)
        return bytes(self._out)
