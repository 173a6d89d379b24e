# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when
# missing, install torch (CPU build) first, then crlgym with its extras, and the Debian
# rendering libraries when missing. A second call only re-runs what changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.crlgym-installed
TORCH := torch==2.13.0
RENDER_PKGS := libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6
export MUJOCO_GL ?= egl

.PHONY: demo test test-unit test-slow lint typecheck format bench deps system-deps clean

demo: deps
	$(VENV)/bin/crl train --overwrite

test: deps
	$(VENV)/bin/pytest -q

test-unit: deps
	$(VENV)/bin/pytest -q -m unit

test-slow: deps
	$(VENV)/bin/pytest -q -m slow

# Ruff (including the rule that bans the bare folder names as imports), then mypy.
lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	MYPY=$(VENV)/bin/mypy .ci/typecheck

typecheck: deps
	MYPY=$(VENV)/bin/mypy .ci/typecheck

format: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: deps
	$(PY) benchmarks/env_overhead.py

deps: system-deps $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

system-deps:
	@command -v dpkg >/dev/null 2>&1 || { echo "crlgym: not a Debian system; install EGL (or OSMesa) for headless rendering yourself."; exit 0; }; \
	missing=$$(for p in $(RENDER_PKGS); do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "crlgym: installing rendering libraries: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "crlgym: missing rendering libraries: $$missing"; \
	    echo "        install them once as root: sudo apt-get install $$missing"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache
