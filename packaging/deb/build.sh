#!/bin/bash
# Build dist/stunmeshd_VERSION_ARCH.deb (make deb) with plain dpkg-deb from the tree that
# `make install DESTDIR=… PREFIX=/usr` stages.
#
# Why not debhelper + dh-virtualenv: the runtime would then be built by a second recipe (its
# own pip calls, shebang and path fix-ups, a debian/ directory kept in step with the Makefile),
# and the package could drift from what `make install` and its tests check. Here both are one
# recipe, packaging/install.sh; what is Debian's is only this file and packaging/deb/*: control,
# maintainer scripts, copyright, changelog, lintian overrides. It builds as an ordinary user,
# offline from WHEELHOUSE like make install, and needs only dpkg-dev (dpkg-shlibdeps).
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")/../.." && pwd)
deb="$here/packaging/deb"
version=$(/usr/bin/python3 -c \
    'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$here/pyproject.toml")
arch=$(dpkg --print-architecture)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2> /dev/null ||
    date +%s)}
build="$here/build/deb"
stage="$build/stunmeshd"
out="$here/dist/stunmeshd_${version}_${arch}.deb"
rm -rf "$build"
mkdir -p "$stage" "$here/dist"

# the files: exactly make install's, at /usr, without byte code (postinst makes it)
DESTDIR="$stage" PREFIX=/usr COMPILE=no "$here/packaging/install.sh"
rm "$stage/usr/lib/stunmeshd/installed-files"  # dpkg keeps its own list
site=$(echo "$stage"/usr/lib/stunmeshd/lib/python3*/site-packages)
# as dh_strip would: the wheels' extension modules carry symbols nothing at run time needs
find "$stage" -name '*.so*' -type f -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +
# the runtime's interpreter link, relative within /usr (Debian policy 10.5)
ln -sfn ../../../bin/python3 "$stage/usr/lib/stunmeshd/bin/python3"

# /usr/share/doc: copyright (ours and every library inside the runtime), changelog
doc="$stage/usr/share/doc/stunmeshd"
{
    echo "stunmeshd"
    echo "Copyright (C) $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the stunmeshd developers"
    echo "License: MIT (/usr/share/common-licenses has no MIT text; it follows)"
    echo
    cat "$deb/MIT"
    echo
    echo "The private Python runtime in /usr/lib/stunmeshd holds these libraries; each one's"
    echo "license text is in its *.dist-info directory under /$(realpath --relative-to="$stage" "$site")."
    echo "Two extension modules contain a C library: nacl/_sodium (libsodium, ISC license) and"
    echo "yaml/_yaml (libyaml, MIT license)."
    echo
    /usr/bin/python3 - "$site" << 'EOF'
import importlib.metadata, sys

for dist in sorted(importlib.metadata.distributions(path=[sys.argv[1]]), key=lambda d: d.name.lower()):
    meta = dist.metadata
    license = meta.get("License-Expression") or ""
    if not license:
        classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        license = ", ".join(classifiers) or (meta.get("License") or "").splitlines()[0]
    print(f"  {meta['Name']} {meta['Version']}: {license}")
EOF
} > "$doc/copyright"
{
    echo "stunmeshd ($version) unstable; urgency=medium"
    echo
    echo "  * Packaged from the stunmeshd source tree by packaging/deb/build.sh."
    echo
    echo " -- $(sed -n 's/^Maintainer: //p' "$deb/control.in")  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/changelog.gz"
install -D -m 0644 "$deb/lintian-overrides" "$stage/usr/share/lintian/overrides/stunmeshd"

# DEBIAN/: maintainer scripts, shared-library dependencies of the compiled wheels, control
mkdir -m 0755 "$stage/DEBIAN"
install -m 0755 "$deb/postinst" "$deb/prerm" "$deb/postrm" "$stage/DEBIAN/"
mkdir -p "$build/shlibs/debian"
printf 'Source: stunmeshd\n\nPackage: stunmeshd\nArchitecture: any\n' > "$build/shlibs/debian/control"
mapfile -t objects < <(find "$stage" -name '*.so*' -type f)
shlibs=$(cd "$build/shlibs" && dpkg-shlibdeps -O -l"$site" "${objects[@]}" 2> /dev/null |
    sed -n 's/^shlibs:Depends=//p')
installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@version@/$version/" -e "s/@arch@/$arch/" -e "s/@installed_size@/$installed_size/" \
    -e "s/@shlibs@/$shlibs/" "$deb/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
if [ -d "$stage/etc" ]; then  # a system file listed under /etc is the admin's to edit
    (cd "$stage" && find etc -type f -printf '/%p\n' | LC_ALL=C sort > DEBIAN/conffiles)
    chmod 0644 "$stage/DEBIAN/conffiles"
fi

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" > /dev/null
echo "$out"
