"""The repository is self-contained: no tracked file points outside it or to a missing document.

Every ``*.md`` a tracked file names must exist — relative to that file, to the repository root,
or in docs/ (where a bare ``testbed.md`` in a docstring lives) — and nothing may name
the design notes beside it: a newcomer must be able to read every document the code cites.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MD_REF = re.compile(r"(?<![\w/.:-])((?:\.\.?/)?(?:[\w-]+/)*[\w.-]+\.md)\b")
# spelled in pieces so this file does not itself point outside the repository
SHARED = "shared"
OUTSIDE = re.compile(rf"\.\./{SHARED}|{SHARED}/docs|/work/")


def lines_of(path: Path) -> list[str]:
    """The file's lines; roff's escaped hyphen (man pages) read as the hyphen it prints."""
    return path.read_text().replace("\\-", "-").splitlines()


def tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in filter(None, out.split("\0")):
        path = REPO / name
        if path.is_file():
            try:
                path.read_text()
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def resolves(ref: str, source: Path) -> bool:
    candidates = (source.parent / ref, REPO / ref, REPO / "docs" / ref)
    return any(c.is_file() and REPO in c.resolve().parents for c in candidates)


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    page = tmp_path / "x.5"
    page.write_text("see docs/wire\\-format.md\n")
    assert MD_REF.findall(lines_of(page)[0]) == ["docs/wire-format.md"]
    refs = MD_REF.findall(f"see testbed.md, (docs/wire-format.md) and ../{SHARED}/docs/x.md")
    assert refs == ["testbed.md", "docs/wire-format.md", f"../{SHARED}/docs/x.md"]
    assert OUTSIDE.search(f"../{SHARED}/docs/architecture.md")
    assert not resolves("no-such-document.md", REPO / "README.md")


def test_no_tracked_file_points_outside_the_repository() -> None:
    bad = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in tracked_text_files()
        if path != Path(__file__).resolve()
        for n, line in enumerate(lines_of(path), 1)
        if OUTSIDE.search(line)
    ]
    assert not bad, "references outside the repository:\n" + "\n".join(bad)


def test_every_cited_document_exists() -> None:
    missing = [
        f"{path.relative_to(REPO)}:{n}: {ref}"
        for path in tracked_text_files()
        if path != Path(__file__).resolve()
        for n, line in enumerate(lines_of(path), 1)
        for ref in MD_REF.findall(line)
        if "://" not in line and not resolves(ref, path)
    ]
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(missing)
