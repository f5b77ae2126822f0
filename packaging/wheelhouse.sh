#!/bin/bash
# Download every wheel the runtime and the build of stunmeshd need into DIR (default
# build/wheelhouse), so that `WHEELHOUSE=DIR make install` and `make deb` need no network.
# The wheels are for Debian's /usr/bin/python3 on this architecture, which is what the
# runtime is built from. A second run with unchanged lock files downloads nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../build/wheelhouse}
locks=("$here/requirements.lock" "$here/build-requirements.lock")
stamp="$dir/.locks.sha256"
want=$(cat "${locks[@]}" | sha256sum)
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
# /usr/bin/python3 may have no pip of its own (python3-pip is optional): use a venv's
pipvenv="$here/../build/pip"
[ -x "$pipvenv/bin/python" ] || /usr/bin/python3 -m venv "$pipvenv"
mkdir -p "$dir"
"$pipvenv/bin/python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$dir" --requirement "${locks[0]}" --requirement "${locks[1]}"
echo "$want" > "$stamp"
