#!/bin/sh
# Install stunmeshd's system files (and, unless --data-only, the Python package) under DESTDIR.
#
#   packaging/install.sh [--data-only]            # into /
#   DESTDIR=/tmp/pkg PREFIX=/usr packaging/install.sh
#
# DESTDIR (default empty) is prepended to every path, as packagers expect; PREFIX (default /usr)
# is where the bus, polkit and systemd look for vendor files. The unit's ExecStart= names
# $PREFIX/bin/stunmeshd. The example polkit rules file is installed as documentation only.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
PYTHON=${PYTHON:-python3}
data_only=no
[ "${1:-}" = "--data-only" ] && data_only=yes

install -D -m 0644 "$here/dbus/io.github.stunmeshd.StunMesh1.conf" \
    "$DESTDIR$PREFIX/share/dbus-1/system.d/io.github.stunmeshd.StunMesh1.conf"
install -D -m 0644 "$here/dbus/io.github.stunmeshd.StunMesh1.service" \
    "$DESTDIR$PREFIX/share/dbus-1/system-services/io.github.stunmeshd.StunMesh1.service"
for xml in "$here"/dbus/io.github.stunmeshd.StunMesh1*.xml; do
    install -D -m 0644 "$xml" "$DESTDIR$PREFIX/share/dbus-1/interfaces/$(basename "$xml")"
done
install -D -m 0644 "$here/polkit/io.github.stunmeshd.StunMesh1.policy" \
    "$DESTDIR$PREFIX/share/polkit-1/actions/io.github.stunmeshd.StunMesh1.policy"
install -D -m 0644 "$here/polkit/50-stunmeshd-group.rules.example" \
    "$DESTDIR$PREFIX/share/doc/stunmeshd/50-stunmeshd-group.rules.example"
mkdir -p "$DESTDIR$PREFIX/lib/systemd/system"
sed "s#/usr/bin/stunmeshd#$PREFIX/bin/stunmeshd#g" "$here/systemd/stunmeshd.service" \
    > "$DESTDIR$PREFIX/lib/systemd/system/stunmeshd.service"
chmod 0644 "$DESTDIR$PREFIX/lib/systemd/system/stunmeshd.service"

if [ "$data_only" = no ]; then
    # the package and its two commands (stunmeshd, stunmeshctl) into $PREFIX
    "$PYTHON" -m pip install --no-deps --no-build-isolation --root "${DESTDIR:-/}" \
        --prefix "$PREFIX" "$here"
fi
