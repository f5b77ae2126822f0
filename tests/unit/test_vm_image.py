"""The VM harness's image builders: the vmlinux extractor and the newc cpio writer."""

from __future__ import annotations

import gzip
import lzma
import subprocess

import pytest

from stunmeshd.lab.cpio import Cpio
from stunmeshd.lab.vmlinux import extract_vmlinux

ELF = b"\x7fELF" + bytes(range(256)) * 64


@pytest.mark.parametrize(
    "compress",
    [
        lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
        gzip.compress,
    ],
    ids=["xz", "gzip"],
)
def test_extracts_the_elf_after_setup_code_and_before_trailing_bytes(compress) -> None:
    # a decoy magic in the "setup code" must be skipped: it does not decompress to an ELF
    image = b"MZ setup \xfd7zXZ\x00 junk \x1f\x8b\x08 junk" + compress(ELF) + b"\0" * 100 + b"tail"
    assert extract_vmlinux(image) == ELF


def test_an_image_without_a_kernel_is_refused() -> None:
    with pytest.raises(ValueError):
        extract_vmlinux(b"MZ" + gzip.compress(b"not an elf") + b"\xfd7zXZ\x00garbage")


def test_cpio_archive_lists_every_entry_with_its_type() -> None:
    # read back with GNU cpio (Debian priority: important, so always there)
    cpio = Cpio()
    cpio.directory("bin")
    cpio.file("bin/tool", b"#!/bin/sh\n", 0o755)
    cpio.file("odd", b"abc")  # a length that needs padding
    cpio.char_device("console", 5, 1)
    listing = subprocess.run(
        ["cpio", "-itv"], input=cpio.finish(), capture_output=True, check=True
    ).stdout.decode()
    lines = listing.splitlines()
    assert [line.split()[-1] for line in lines] == ["bin", "bin/tool", "odd", "console"]
    assert lines[0].startswith("d") and lines[1].startswith("-rwx") and lines[3].startswith("c")
