"""stunmesh-applet: stunmeshd as a desktop user sees it, in the system tray.

A StatusNotifierItem with a ``com.canonical.dbusmenu`` menu on the session bus, fed by the
daemon's signals on the system bus. Client side only: nothing here imports the engine or the
stores; names come from ``stunmeshd.bus.names``.
"""
