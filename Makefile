# stunmeshd — set-up, tests, demo and benchmarks.
# Everything installs itself on a fresh Debian machine (run as root).

VENV    ?= .venv
PY      := $(VENV)/bin/python
# Debian packages the tests, the lab and the demo use (docs/testbed.md).
DEBS    := wireguard-go wireguard-tools coturn dhtnode stun-server conntrack nftables \
           iproute2 iputils-ping util-linux dbus-daemon polkitd python3-venv python3-gi \
           systemd procps libglib2.0-bin
# make deb and its test: dpkg-shlibdeps and strip (dpkg-dev), lintian
DEBS    += dpkg-dev lintian
# the tray applet's screenshot test: an X server and a real StatusNotifierItem host
DESKTOP_DEBS := xvfb xfce4-panel xdotool imagemagick librsvg2-common fonts-dejavu-core
DEBS    += $(DESKTOP_DEBS)
DEBS    += miniupnpd-nftables

# the VM tier (make test-vm): qemu, Debian's kernel (it has wireguard.ko), a static busybox
DEBS    += qemu-system-x86 linux-image-amd64 busybox-static

BENCHES := stun_overhead convergence scale store_cycle bus_latency recovery idle
BENCHES += applet_idle
BENCHES += kernel_wg
BENCHES += bus_reconnect
BENCHES += portmap
BENCHES += store_watch
BENCHES += config_limits
BENCHES += footprint

PREFIX  ?= /usr
DESTDIR ?=
WHEELHOUSE ?=

.PHONY: all deps venv test test-vm lint typecheck demo install uninstall wheelhouse deb applet-screenshot clean $(addprefix bench-,$(BENCHES))

all: test

deps:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null; }

# The venv is built from Debian's python so an unprivileged test user can run it
# (the image's default python lives under /root); system site packages give it python3-gi.
$(VENV)/.installed: pyproject.toml
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

test: deps venv
	$(PY) -m pytest -m "not vm"

# The VM tier (tests/vm, README "The VM tier"): the .deb under systemd, kernel WireGuard.
test-vm: deps venv deb
	$(PY) -m pytest -m vm tests/vm

lint: venv
	$(VENV)/bin/ruff check stunmeshd tests bench
	$(VENV)/bin/ruff format --check stunmeshd tests bench

# mypy --strict on the modules listed in pyproject.toml ([tool.mypy] files)
typecheck: venv
	$(VENV)/bin/mypy

# The lab: two hosts behind NAT connect with stunmeshd (network namespaces; run as root).
demo: deps venv
	$(PY) -m stunmeshd.lab.demo $(DEMO_ARGS)

# The same lab kept up to try things by hand: `make lab`, then in another terminal
# `make lab-shell HOST=A` (stunmeshctl, busctl and wg point at host A), `make lab-down`.
.PHONY: lab lab-shell lab-down docs
HOST    ?= A
lab: deps venv
	$(PY) -m stunmeshd.lab.shell up
lab-shell: venv
	$(PY) -m stunmeshd.lab.shell shell $(HOST)
lab-down: venv
	$(PY) -m stunmeshd.lab.shell down

# Man pages and shell completions, generated from the parsers and the config key list into
# share/ (committed, installed from there; a test fails when they are stale: run this).
# Their tests render the pages and load the completions in each shell.
DEBS    += man-db bash-completion zsh fish
docs: venv
	$(PY) -m stunmeshd.docgen --out share

# Benchmarks print their figures as key=value pairs on their last line (run as root).
$(addprefix bench-,$(BENCHES)): bench-%: deps venv
	$(PY) bench/$*.py

# ---- installing and packaging (packaging/) ----
# install: a private runtime (virtualenv of /usr/bin/python3 with the pinned dependencies) in
# $(PREFIX)/lib/stunmeshd, $(PREFIX)/bin/stunmeshd and stunmeshctl, and the system files of
# packaging/files; DESTDIR is honoured for packagers. WHEELHOUSE=dir installs offline.
install:
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' WHEELHOUSE='$(WHEELHOUSE)' packaging/install.sh

# removes exactly what install made (its manifest, $(PREFIX)/lib/stunmeshd/installed-files)
uninstall:
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' packaging/uninstall.sh

# every wheel install needs, for building without network: make wheelhouse WHEELHOUSE=dir
wheelhouse:
	packaging/wheelhouse.sh $(or $(WHEELHOUSE),build/wheelhouse)

# dist/stunmeshd_VERSION_ARCH.deb (plain dpkg-deb around install; packaging/deb/build.sh)
deb:
	WHEELHOUSE='$(WHEELHOUSE)' packaging/deb/build.sh

# docs/applet-menu.png: the applet's open menu on the lab, kept by its screenshot test (root)
applet-screenshot: deps venv
	STUNMESH_APPLET_SCREENSHOT=docs/applet-menu.png $(PY) -m pytest -q tests/applet/test_screenshot.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info

# A long fuzz run: the fuzz tests (tests/fuzz) with FUZZ_EXAMPLES examples each; `make test`
# runs the same tests with a small budget.
FUZZ_EXAMPLES ?= 10000
.PHONY: fuzz
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/fuzz
