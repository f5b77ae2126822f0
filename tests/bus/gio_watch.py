"""A GLib ObjectManager client, run as a separate process by the bus tests.

GLib's ``GDBusObjectManagerClient`` only follows InterfacesAdded/Removed sent from the
manager's path; this prints what it sees, one line per event, so a test can check that
devices and peers appear and disappear for real GLib clients (GNOME applets are GLib clients).

    python3 gio_watch.py ADDRESS BUS_NAME ROOT_PATH
prints "ready <path> <path> ...", then "added <path> <interfaces>" / "removed <path>".
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402


def say(*words: str) -> None:
    print(" ".join(words), flush=True)


def main(address: str, bus_name: str, root: str) -> None:
    flags = (
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    )
    conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
    manager = Gio.DBusObjectManagerClient.new_sync(
        conn, Gio.DBusObjectManagerClientFlags.NONE, bus_name, root, None, None, None
    )

    def names(obj: Gio.DBusObject) -> str:
        return ",".join(sorted(i.get_interface_name() for i in obj.get_interfaces()))

    manager.connect("object-added", lambda _m, obj: say("added", obj.get_object_path(), names(obj)))
    manager.connect("object-removed", lambda _m, obj: say("removed", obj.get_object_path()))
    say("ready", *sorted(o.get_object_path() for o in manager.get_objects()))
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
