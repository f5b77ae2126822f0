"""A throwaway VM with systemd as PID 1 on this machine's own root file system.

Why a script of our own around qemu rather than virtme-ng: virtme-ng's ``--systemd`` mode booted
the host's ``graphical.target`` and never ran the command, and it cannot boot the decompressed
kernel. What this does instead, in one short file:

- Debian's ``linux-image-amd64`` kernel, booted as the ELF ``vmlinux`` extracted from the bzImage
  (no decompressor under TCG: ``/dev/kvm`` here is a nested paravirtual KVM that cannot run it);
- a tiny busybox initramfs that loads the virtio/9p/overlay modules of that same kernel, mounts
  the host ``/`` read-only over 9p under a tmpfs overlay, and hands over to
  ``/lib/systemd/systemd`` — the kernel modules it later needs (``wireguard.ko``) are the
  package's, reachable through the 9p root in ``/lib/modules/<version>``;
- a dedicated target (``stunmesh-vm.target``: basic.target plus one oneshot unit) instead of the
  host's default target, and none of the host's fstab, enabled services, timers, ``/.dockerenv``
  (which would make systemd think it runs in a container) or ``tmp.conf`` (which would wipe the
  overlaid ``/tmp`` over 9p);
- the control channel is a second, writable 9p share at ``/vmshare``: the oneshot unit runs
  ``run.sh`` from it, writes the output and exit status there, and powers the machine off;
  files the script writes to ``/vmshare/out`` come back in :attr:`VmRun.files`;
- no network device (``-nic none``); a soft lockup panics (``softlockup_panic=1``) and the run is
  retried once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stunmeshd.lab.cpio import Cpio
from stunmeshd.lab.vmlinux import extract_to

QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
# The modules the initramfs needs before the root is mounted (their dependencies follow).
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
TARGET = "stunmesh-vm.target"
RUN_UNIT = "stunmesh-vm-run.service"
# Signs in the console log that the kernel died rather than the test failing.
PANIC_MARKERS = ("Kernel panic", "soft lockup", "BUG: ")

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 root /lower
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,index=off,xino=off \
    overlay /newroot
mkdir -p /newroot/vmshare
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /newroot/vmshare
keep=/newroot/vmshare/keep
n=0
[ -f $keep ] && while read -r d; do
    n=$((n+1)); mkdir -p /keep/$n; mount --bind "/newroot$d" /keep/$n
done < $keep
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
n=0
[ -f $keep ] && while read -r d; do
    n=$((n+1)); mkdir -p "/newroot$d"; mount --move /keep/$n "/newroot$d"
done < $keep
sh /newroot/vmshare/prepare.sh /newroot
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
"""

# Run inside the initramfs on the overlaid root, before systemd starts.
PREPARE = r"""set -e
r=$1
rm -f $r/.dockerenv $r/run/.containerenv
: > $r/etc/fstab
mkdir -p $r/etc/tmpfiles.d
ln -sf /dev/null $r/etc/tmpfiles.d/tmp.conf
for d in $r/etc/systemd/system/*.wants; do rm -rf "$d"; done
mkdir -p $r/etc/systemd/system-generators
for g in $r/lib/systemd/system-generators/*; do
    ln -sf /dev/null $r/etc/systemd/system-generators/${g##*/}
done
cp $r/vmshare/units/* $r/etc/systemd/system/
"""

TARGET_UNIT = f"""[Unit]
Description=stunmeshd VM test run
Requires=basic.target {RUN_UNIT}
After=basic.target {RUN_UNIT}
AllowIsolate=yes
"""

RUN_UNIT_TEXT = """[Unit]
Description=Run /vmshare/run.sh and power off
After=basic.target dbus.socket
Wants=dbus.socket
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=/bin/sh -c 'cut -d" " -f1 /proc/uptime > /vmshare/uptime; \
/bin/sh /vmshare/run.sh > /vmshare/output 2>&1; echo $? > /vmshare/status'
TimeoutStartSec=infinity
"""


class VmError(RuntimeError):
    """The VM could not be set up, or did not report a result."""


@dataclass
class VmRun:
    """What one boot produced: the script's exit status and output, and the console log."""

    status: int
    output: str
    console: str
    boot_s: float  # kernel uptime when the script started: boot to "systemd ran our unit"
    wall_s: float  # qemu start to exit
    files: dict[str, bytes]  # what the script left in /vmshare/out


def kernel_release() -> str:
    """The newest kernel that Debian's ``linux-image-amd64`` installed (modules and image)."""
    releases = sorted(
        p.name[len("vmlinuz-") :]
        for p in Path("/boot").glob("vmlinuz-*")
        if Path("/lib/modules", p.name[len("vmlinuz-") :], "modules.dep").exists()
    )
    if not releases:
        raise VmError("no kernel in /boot with modules (apt install linux-image-amd64)")
    return releases[-1]


def prerequisites() -> list[str]:
    """What is missing to boot the VM (empty when it can run)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if shutil.which(QEMU) is None:
        missing.append(f"{QEMU} (apt install qemu-system-x86)")
    if not BUSYBOX.exists():
        missing.append("busybox (apt install busybox-static)")
    try:
        kernel_release()
    except VmError as exc:
        missing.append(str(exc))
    return missing


def _module_order(release: str, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to /lib/modules/<release>) of ``wanted`` and their dependencies, in an
    order ``insmod`` accepts (dependencies first)."""
    base = Path("/lib/modules", release)
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko").replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:  # built in when absent
            visit(by_name[name])
    return order


def build_initramfs(release: str) -> bytes:
    """The busybox initramfs: /init, busybox and the modules to mount the 9p/overlay root."""
    cpio = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "modules"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    order = _module_order(release, INITRAMFS_MODULES)
    for rel in order:
        cpio.file(f"modules/{Path(rel).name}", Path("/lib/modules", release, rel).read_bytes())
    cpio.file("modules/order", "".join(f"{Path(r).name}\n" for r in order).encode())
    return cpio.finish()


class Vm:
    """Boots the VM once per :meth:`run`; all files live in a temporary directory."""

    def __init__(self, memory_mb: int = 2048, cpus: int = 2, keep: Sequence[Path] = ()) -> None:
        """``keep``: host directories the guest must still see although they lie under
        ``/tmp``, which the guest gets fresh (a checkout cloned into a temporary directory)."""
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.keep = [p.resolve() for p in keep if p.resolve().is_relative_to("/tmp")]
        self.release = kernel_release()
        self._dir = Path(tempfile.mkdtemp(prefix="stunmeshd-vm-"))
        self.kernel = extract_to(Path(f"/boot/vmlinuz-{self.release}"), self._dir / "vmlinux")
        self.initramfs = self._dir / "initramfs.cpio"
        self.initramfs.write_bytes(build_initramfs(self.release))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _argv(self, share: Path, console: Path) -> list[str]:
        cmdline = " ".join(
            (
                "console=ttyS0 rdinit=/init panic=-1 softlockup_panic=1 loglevel=4",
                f"systemd.unit={TARGET} systemd.show_status=error",
                # TCG: the tsc is unstable and calibration wanders; stay on a stable clock.
                "tsc=unstable",
            )
        )
        return [
            QEMU,
            *("-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"),
            *("-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max"),
            *("-smp", str(self.cpus), "-m", str(self.memory_mb)),
            *("-kernel", str(self.kernel), "-initrd", str(self.initramfs)),
            *("-append", cmdline),
            *("-nic", "none"),
            *("-serial", f"file:{console}"),
            *(
                "-fsdev",
                "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device",
                "virtio-9p-pci,fsdev=root,mount_tag=root",
            ),
            *(
                "-fsdev",
                f"local,id=share,path={share},security_model=none",
                "-device",
                "virtio-9p-pci,fsdev=share,mount_tag=share",
            ),
        ]

    async def _boot(self, script: str, timeout: float) -> VmRun | None:
        share = Path(tempfile.mkdtemp(prefix="share-", dir=self._dir))
        try:
            (share / "units").mkdir()
            (share / "units" / TARGET).write_text(TARGET_UNIT)
            (share / "units" / RUN_UNIT).write_text(RUN_UNIT_TEXT)
            (share / "prepare.sh").write_text(PREPARE)
            (share / "run.sh").write_text(script)
            (share / "keep").write_text("".join(f"{path}\n" for path in self.keep))
            (share / "out").mkdir()
            console = share / "console.log"
            start = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *self._argv(share, console),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise VmError(
                    f"VM did not finish within {timeout:.0f}s; console:\n"
                    + _tail(console)
                    + "\noutput:\n"
                    + _tail(share / "output")
                ) from None
            wall = time.monotonic() - start
            log = console.read_text(errors="replace") if console.exists() else ""
            status_file = share / "status"
            if not status_file.exists():
                if any(m in log for m in PANIC_MARKERS):
                    return None  # the kernel died: retried once by run()
                raise VmError(
                    f"VM exited {proc.returncode} without a result: {err.decode().strip()}\n"
                    + _tail(console)
                )
            uptime = (share / "uptime").read_text().strip()
            return VmRun(
                status=int(status_file.read_text()),
                output=(share / "output").read_text(errors="replace"),
                console=log,
                boot_s=float(uptime) if uptime else 0.0,
                wall_s=wall,
                files={p.name: p.read_bytes() for p in (share / "out").iterdir() if p.is_file()},
            )
        finally:
            shutil.rmtree(share, ignore_errors=True)

    async def run(self, script: str, timeout: float = 300.0) -> VmRun:
        """Boot, run ``script`` (sh, as root, systemd as PID 1), power off; retried once if the
        kernel panicked (a soft lockup under TCG)."""
        for _ in range(2):
            result = await self._boot(script, timeout)
            if result is not None:
                return result
        raise VmError("the VM's kernel panicked twice")


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return "(none)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
