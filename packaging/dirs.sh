# Where everything goes; sourced by install.sh and uninstall.sh so both agree.
# PREFIX is where stunmeshd runs from; DESTDIR (packagers) is prepended only when writing.
# shellcheck shell=bash
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
PREFIX=${PREFIX%/}
prefix=$PREFIX
bindir=$PREFIX/bin
datadir=$PREFIX/share
docdir=$datadir/doc/stunmeshd
if [ "$PREFIX" = /usr ]; then sysconfdir=/etc; else sysconfdir=$PREFIX/etc; fi
unitdir=${UNITDIR:-$PREFIX/lib/systemd/system}
runtimedir=$PREFIX/lib/stunmeshd       # the private virtualenv
manifest=$runtimedir/installed-files   # every path install.sh made, for uninstall.sh
