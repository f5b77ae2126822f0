#!/bin/sh
# dirstore.sh - a stunmeshd / stunmesh-go store plugin (shell protocol) that keeps each
# record as a file in a directory. Hosts that share the directory (same machine, NFS, a
# synced folder) see each other's records.
#
# Directory: the first argument if given, else $STUNMESH_STORE_DIR.
# stdin:     STUNMESH_ACTION=get|set, STUNMESH_KEY=<40 hex>, STUNMESH_VALUE=<hex> (set only)
# get:       prints the stored value; prints nothing and exits 0 when there is none
# set:       writes the value atomically (temporary file in the same directory, then mv)
# Errors go to stderr with a non-zero exit status.
#
# The input is parsed line by line, never eval'ed, and the key must be exactly 40 lower-case
# hex characters, so it cannot name a path outside the directory.

set -u
umask 077

fail() {
    printf 'dirstore: %s\n' "$*" >&2
    exit 1
}

dir=${1:-${STUNMESH_STORE_DIR:-}}
[ -n "$dir" ] || fail "no directory: pass it as the first argument or set STUNMESH_STORE_DIR"

action= key= value=
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
        STUNMESH_ACTION=*) action=${line#STUNMESH_ACTION=} ;;
        STUNMESH_KEY=*) key=${line#STUNMESH_KEY=} ;;
        STUNMESH_VALUE=*) value=${line#STUNMESH_VALUE=} ;;
        *) ;;  # unknown lines are ignored, for forward compatibility
    esac
done

case $key in
    *[!0-9a-f]*) fail "invalid key: expected 40 lower-case hex characters" ;;
esac
[ ${#key} -eq 40 ] || fail "invalid key: expected 40 lower-case hex characters"

file=$dir/$key
case $action in
    get)
        [ -f "$file" ] || exit 0
        cat -- "$file" || fail "cannot read record $key"
        ;;
    set)
        case $value in
            '' | *[!0-9a-fA-F]*) fail "invalid value: expected hex" ;;
        esac
        [ -d "$dir" ] || mkdir -p -- "$dir" || fail "cannot create directory $dir"
        tmp=$dir/.$key.$$.tmp
        trap 'rm -f -- "$tmp"' EXIT
        printf '%s\n' "$value" >"$tmp" || fail "cannot write to $dir"
        mv -f -- "$tmp" "$file" || fail "cannot replace record $key"
        trap - EXIT
        ;;
    '') fail "no STUNMESH_ACTION on stdin" ;;
    *) fail "unknown action: $action" ;;
esac
exit 0
