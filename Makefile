# Two set-up commands work on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install install-test bench bench-soak bench-realtime clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark (bench/README in docs/performance.md): the mock upstream, the floor app and
# the gateway, 1 worker pinned to core 0, load on core 1. BENCH_ARGS="--duration 10" etc.
bench: install
	PYTHON=$(PYTHON) bench/setup.sh
	bench/.venv/bin/python bench/run.py $(BENCH_ARGS)

# 10 minutes of the 50-connection load per target; RSS growth after the first minute.
bench-soak: install
	PYTHON=$(PYTHON) bench/setup.sh
	bench/.venv/bin/python bench/run.py --soak $(BENCH_ARGS)

# WebRTC calls per worker: CPU, added latency, loss (bench/realtime.py). Needs root (a network namespace).
bench-realtime: install-test
	unshare -n sh -c 'ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec "$$0" bench/realtime.py $(BENCH_ARGS)' $(BIN)/python

clean:
	rm -rf $(VENV) build *.egg-info
