"""stunmeshctl: the command-line client of stunmeshd (networkctl/nmcli-like).

``client`` talks D-Bus, ``view`` turns the daemon's properties into text and JSON, ``monitor``
follows signals, ``netcheck`` probes the network without the daemon, ``cli`` is the command line.
Only client-side modules are imported: starting stunmeshctl never loads the engine.
"""

from __future__ import annotations

from stunmeshd.ctl.cli import build_parser, main

__all__ = ["build_parser", "main"]
