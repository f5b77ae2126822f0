#!/bin/bash
# Remove exactly what packaging/install.sh installed at DESTDIR/PREFIX, following its manifest
# (or the list given as the argument):
# the files and links, then the directories it made, deepest first, if they are empty (a
# directory something else put a file into stays).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=packaging/dirs.sh
. "$here/packaging/dirs.sh"

list=${1:-$DESTDIR$manifest}  # install.sh passes its list so far when it fails
if [ ! -f "$list" ]; then
    echo "stunmeshd is not installed at $DESTDIR$PREFIX (no $list)" >&2
    exit 1
fi
entries=$(cat "$list")
# byte code Python wrote next to the runtime's own modules is part of the runtime
find "$DESTDIR$runtimedir" -depth -type d -name __pycache__ -exec rm -rf {} + 2> /dev/null || true
grep -v '/$' <<< "$entries" | while IFS= read -r path; do
    rm -f -- "$DESTDIR$path"
done
grep '/$' <<< "$entries" | awk '{ print gsub("/", "/"), $0 }' | sort -rn | cut -d' ' -f2- |
    while IFS= read -r dir; do
        rmdir -- "$DESTDIR$dir" 2> /dev/null || true  # still holds what others put there
    done
