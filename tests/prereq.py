"""Prerequisite checks: skip locally, fail under CI (``CI`` set), when something is missing."""

from __future__ import annotations

import os
import shutil

import pytest

ROOT_TOOLS = ("ip", "nft", "nsenter", "wireguard-go", "turnserver", "conntrack")


def require(ok: bool, reason: str) -> None:
    """Skip locally, fail under CI, when a prerequisite is missing."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    require(not missing, f"missing programs: {', '.join(missing)}")


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")
    require(os.path.exists("/proc/self/ns/net"), "needs network namespaces")
    require_tools(*ROOT_TOOLS)
