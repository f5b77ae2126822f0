"""``python -m stunmeshd.docgen --out PREFIX/share``: write the man pages and completions.

Layout under the directory: man/man{1,5,8}/…, bash-completion/completions/…,
zsh/vendor-completions/…, fish/vendor_completions.d/… — where Debian looks for them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stunmeshd.docgen.completion import scripts
from stunmeshd.docgen.roff import PAGES


def generate() -> dict[str, str]:
    files = {f"man/{rel}": page() for rel, page in PAGES.items()}
    files.update(scripts())
    return files


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stunmeshd.docgen", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="e.g. /usr/share")
    args = parser.parse_args()
    for rel, text in generate().items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
        print(path)
    return 0


raise SystemExit(main())
