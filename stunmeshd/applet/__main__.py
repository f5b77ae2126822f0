"""``python -m stunmeshd.applet``: the same entry point as the installed ``stunmesh-applet``."""

from stunmeshd.applet.app import main

if __name__ == "__main__":
    raise SystemExit(main())
