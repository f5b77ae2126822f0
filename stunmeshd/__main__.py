"""``python -m stunmeshd``: the same entry point as the installed ``stunmeshd`` command."""

from stunmeshd.daemon import main

if __name__ == "__main__":
    raise SystemExit(main())
