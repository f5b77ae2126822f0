"""Log lines carry journald's priority prefix exactly when stderr is the journal's stream."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from stunmeshd.logs import setup_logging


@pytest.fixture
def stderr_file(tmp_path):
    path = tmp_path / "stderr"
    stream = path.open("w")
    yield path, stream
    stream.close()
    logging.getLogger().handlers.clear()


def use_as_stderr(monkeypatch, stream) -> None:
    # in the test body: pytest's capture re-installs its own sys.stderr after fixture set-up
    monkeypatch.setattr(sys, "stderr", stream)


def emit_two(stream) -> None:
    log = logging.getLogger("stunmeshd.test")
    log.warning("disk %s", "nearly full")
    log.error("boom\nsecond line")
    stream.flush()


def test_journal_stream_gets_syslog_priorities(stderr_file, monkeypatch) -> None:
    path, stream = stderr_file
    st = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    use_as_stderr(monkeypatch, stream)
    setup_logging("info")
    emit_two(stream)
    assert path.read_text().splitlines() == [
        "<4>WARNING stunmeshd.test: disk nearly full",
        "<3>ERROR stunmeshd.test: boom",
        "<3>second line",
    ]


@pytest.mark.parametrize("journal_stream", [None, "1:2"], ids=["unset", "other-stream"])
def test_other_stderr_has_no_prefix(stderr_file, monkeypatch, journal_stream) -> None:
    # JOURNAL_STREAM inherited by a child whose stderr was redirected must not add prefixes
    path, stream = stderr_file
    if journal_stream is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream)
    use_as_stderr(monkeypatch, stream)
    setup_logging("info", "json")
    emit_two(stream)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert all(line.startswith('{"ts":') for line in lines)
