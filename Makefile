# The two commands of the README:  `make iso`  and  `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
LIVECD  := $(VENV)/bin/livecd
ISO     ?= libcaca-cpushare-livecd.iso
PYTEST_ARGS ?=

.PHONY: setup iso deb test test-fast test-matrix smoke boot bench lint clean diffoscope postgres

$(VENV)/.installed: pyproject.toml scripts/install-host-packages.sh
	scripts/install-host-packages.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

iso: setup
	$(LIVECD) build -o $(ISO)

# The cpushare package for Debian 12 and Ubuntu 24.04 machines, in the repository root.
deb: setup
	$(LIVECD) deb -o .

test: setup lint postgres
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup postgres
	$(PY) -m pytest -q -m "not qemu" $(PYTEST_ARGS)

# The market's tests run on SQLite and on Debian's PostgreSQL 15 cluster (over its Unix
# socket, as a superuser role named after the user running them). Idempotent.
PG_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
postgres: setup
	@pg_lsclusters -h 15 main | grep -q online || \
	    $(PG_SUDO) pg_ctlcluster --skip-systemctl-redirect 15 main start
	@$(PG_SUDO) su postgres -c "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname = '$$(id -un)'\"" | \
	    grep -q 1 || $(PG_SUDO) su postgres -c "createuser --superuser $$(id -un)"

# The whole boot matrix (NICs, vCPUs, 256 MB) and the slow recovery tests; the default
# suite boots only their representative part.
test-matrix: setup
	$(PY) -m pytest -q -m qemu $(PYTEST_ARGS) tests/boot/test_matrix.py tests/boot/test_recovery.py \
	    tests/boot/test_small_machines.py

smoke: iso
	$(LIVECD) smoke $(ISO)

boot: iso
	$(LIVECD) boot $(ISO)

bench: setup postgres
	$(PY) scripts/bench.py

# For people: two builds in different directories, time zones, umasks and locales, shown
# side by side by diffoscope (silent when they are the same). Any two ISOs:
#   make diffoscope A=old.iso B=new.iso
REPRO := build/repro
diffoscope: setup
	@if [ -z "$(A)$(B)" ]; then \
	    mkdir -p $(REPRO)/a $(REPRO)/b && \
	    TZ=UTC LC_ALL=C.UTF-8 $(LIVECD) build -o $(REPRO)/a/$(ISO) && \
	    cd $(REPRO)/b && umask 077 && \
	    TZ=Pacific/Kiritimati LC_ALL=C $(abspath $(LIVECD)) build -o $(ISO); \
	fi
	diffoscope $(or $(A),$(REPRO)/a/$(ISO)) $(or $(B),$(REPRO)/b/$(ISO))

lint: setup
	$(VENV)/bin/ruff check livecd cpushare market diskformats tests scripts
	$(VENV)/bin/ruff format --check livecd cpushare market diskformats tests scripts
	$(VENV)/bin/mypy

clean:
	rm -rf build $(ISO) $(ISO).manifest.json cpushare_*_amd64.deb
