#!/bin/bash
# Install stunmeshd: a private Python runtime with the pinned dependencies, the two commands,
# and the system files listed in packaging/files; every path made is recorded in a manifest
# that packaging/uninstall.sh follows.
#
#   packaging/install.sh               # DESTDIR=/tmp/pkg PREFIX=/usr packaging/install.sh
#   packaging/install.sh --data-only   # only the system files (no runtime, no manifest)
#
# Environment (directories: packaging/dirs.sh):
#   DESTDIR     staging root prepended to every written path (packagers); default empty
#   PREFIX      where stunmeshd runs from; default /usr
#   UNITDIR     the systemd unit directory; default $PREFIX/lib/systemd/system
#   WHEELHOUSE  install offline, from this directory of wheels only (make wheelhouse);
#               default: build/wheelhouse, downloaded first by packaging/wheelhouse.sh
#   COMPILE     yes (default) byte-compiles the runtime; no leaves it to a package's postinst
#
# The runtime is a virtualenv in $PREFIX/lib/stunmeshd made from Debian's /usr/bin/python3,
# whatever python3 comes first on PATH. It is built where it is staged ($DESTDIR$PREFIX/...) and
# then fixed up for $PREFIX: a venv only records its own location in its scripts' shebangs and
# pyvenv.cfg's informational `command`, and Python finds its prefix from the interpreter's
# path, so rewriting those is enough. Building it at $PREFIX itself would write into the
# packager's real /usr, which is what DESTDIR is there to avoid.
set -euo pipefail
umask 022  # everything readable, like any package

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/dirs.sh
. "$here/packaging/dirs.sh"
BASE_PYTHON=/usr/bin/python3
COMPILE=${COMPILE:-yes}
data_only=no
[ "${1:-}" = "--data-only" ] && data_only=yes

mkdir -p "${DESTDIR:-/}"
if [ "$data_only" = no ] && [ -f "$DESTDIR$manifest" ]; then
    "$here/packaging/uninstall.sh"  # a reinstall leaves nothing of the previous version behind
fi

made=$(mktemp)
work=$(mktemp -d)
venv="$DESTDIR$runtimedir"
# a failed install takes back what it made, so nothing is left half-installed
finish() {
    local status=$?
    if [ "$status" -ne 0 ] && [ "$data_only" = no ]; then
        echo "install failed: removing what it installed" >&2
        if [ -d "$venv" ]; then
            find "$venv" -mindepth 1 -type d -printf "$runtimedir/%P/\n" >> "$made"
            find "$venv" ! -type d -printf "$runtimedir/%P\n" >> "$made"
        fi
        "$here/packaging/uninstall.sh" "$made" || true
    fi
    rm -rf "$made" "$work"
    exit "$status"
}
trap finish EXIT

# A directory and each missing parent; those below PREFIX are recorded for uninstall (PREFIX
# itself and what is above it, e.g. /usr in a staging tree, belong to the system).
make_dir() {
    local dir=$1
    [ -d "$DESTDIR$dir" ] && return 0
    make_dir "$(dirname "$dir")"
    mkdir "$DESTDIR$dir"
    case "$dir" in "$PREFIX"/*) echo "$dir/" >> "$made" ;; esac
}

subst() {
    sed -e "s#@prefix@#$prefix#g" -e "s#@bindir@#$bindir#g" -e "s#@datadir@#$datadir#g" \
        -e "s#@docdir@#$docdir#g" -e "s#@unitdir@#$unitdir#g" -e "s#@runtimedir@#$runtimedir#g" \
        -e "s#@sysconfdir@#$sysconfdir#g"
}

# ---- the system files (packaging/files) ----------------------------------------------------
while read -r source dir mode how; do
    case "$source" in '' | '#'*) continue ;; esac
    dir=$(printf '%s' "$dir" | subst)
    make_dir "$dir"
    matched=no
    for path in "$here"/$source; do
        [ -f "$path" ] || continue
        matched=yes
        target="$dir/$(basename "$path")"
        case "$how" in
            copy) install -m "$mode" "$path" "$DESTDIR$target" ;;
            subst)
                subst < "$path" > "$DESTDIR$target"
                chmod "$mode" "$DESTDIR$target"
                ;;
            *) echo "packaging/files: $source: unknown way '$how'" >&2 && exit 1 ;;
        esac
        echo "$target" >> "$made"
    done
    [ "$matched" = yes ] || { echo "packaging/files: $source: no such file" >&2 && exit 1; }
done < "$here/packaging/files"

[ "$data_only" = yes ] && exit 0

# ---- the runtime -----------------------------------------------------------------------------
if [ -z "${WHEELHOUSE:-}" ]; then
    WHEELHOUSE="$here/build/wheelhouse"
    "$here/packaging/wheelhouse.sh" "$WHEELHOUSE"
fi
[ -d "$WHEELHOUSE" ] || { echo "WHEELHOUSE=$WHEELHOUSE: no such directory" >&2 && exit 1; }
make_dir "$runtimedir"
"$BASE_PYTHON" -m venv "$venv"  # pip comes from Debian's ensurepip wheels: no network
# pip sees only the wheelhouse: no index, no user or site pip configuration, no PIP_* variables
pip() {
    PIP_CONFIG_FILE=/dev/null "$venv/bin/python" -m pip --isolated --disable-pip-version-check \
        --no-input --quiet "$@"
}
# stunmeshd's own wheel, built from a clean copy (setuptools reuses a stale build/ directory)
mkdir "$work/src"
tar -C "$here" --exclude=__pycache__ --exclude=READY -cf - pyproject.toml README.md stunmeshd |
    tar -C "$work/src" -xf -
pip wheel --no-deps --no-index --find-links "$WHEELHOUSE" --wheel-dir "$work/dist" "$work/src"
lock="$here/packaging/requirements.lock"
pip install --no-index --find-links "$WHEELHOUSE" --only-binary=:all: --no-compile \
    --constraint "$lock" --requirement "$lock" "$work"/dist/stunmeshd-*.whl
# what only built it goes: pip and setuptools, the other scripts, the wheel's temporary URL
pip uninstall --yes pip setuptools
find "$venv/bin" -type f ! -name stunmeshd ! -name stunmeshctl -delete  # activate, dependencies' tools
for info in "$venv"/lib/python3*/site-packages/stunmeshd-*.dist-info; do
    rm -f "$info/direct_url.json"
    sed -i '/direct_url\.json/d' "$info/RECORD"
done
# shebangs and pyvenv.cfg name the staging path: point them at $PREFIX
if [ -n "$DESTDIR" ]; then
    grep -rlF -- "$venv" "$venv/bin" "$venv/pyvenv.cfg" | while IFS= read -r file; do
        sed -i "s#$venv#$runtimedir#g" "$file"
    done
    if leaks=$(grep -rlF -- "$DESTDIR" "$venv"); then
        echo "the runtime still names DESTDIR in: $leaks" >&2 && exit 1
    fi
fi
if [ "$COMPILE" = yes ]; then
    strip=()
    [ -n "$DESTDIR" ] && strip=(-s "$DESTDIR")  # tracebacks name $PREFIX, not the staging path
    "$venv/bin/python" -m compileall -q "${strip[@]}" "$venv/lib" > /dev/null
fi
find "$venv" -mindepth 1 -type d -printf "$runtimedir/%P/\n" >> "$made"
find "$venv" ! -type d -printf "$runtimedir/%P\n" >> "$made"

# ---- the commands: links into the runtime's own entry points ---------------------------------
make_dir "$bindir"
for command in stunmeshd stunmeshctl; do
    ln -sfn "$(realpath -m --relative-to="$bindir" "$runtimedir/bin/$command")" \
        "$DESTDIR$bindir/$command"
    echo "$bindir/$command" >> "$made"
done

echo "$manifest" >> "$made"
sort -u "$made" > "$DESTDIR$manifest"
chmod 0644 "$DESTDIR$manifest"
