# The two set-up commands of the README:  `make demo`  and  `make test`.
# Both create their own virtual environment (.venv) and need nothing installed by hand.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check -q
STAMP   := $(VENV)/.hambench-installed
SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTEST_ARGS ?=

.PHONY: install demo test browser bench clean

install: $(STAMP)

# torch is pinned to the CPU wheel first (2.13.0), so nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml CMakeLists.txt $(wildcard cpp/*.cpp cpp/*.hpp)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PIP) install torch==2.13.0 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12" 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PIP) install --no-build-isolation -e ".[test]" 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(PY) -c "import hambench._core, torch; assert torch.__version__.startswith('2.13.0')"
	touch $@

demo: install
	$(VENV)/bin/hambench demo -o demo_out

test: install browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# tests/test_site_browser.py drives Debian's Chromium with Playwright (never Playwright's own browser download):
# install the chromium package when /usr/bin/chromium is missing and we are root (CI); otherwise say so.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
	      || { echo "make: could not apt-get install chromium (the browser test needs /usr/bin/chromium)"; exit 1; }; \
	  else \
	    echo "note: /usr/bin/chromium is missing and this is not root: install Debian's chromium for the browser test"; \
	  fi; \
	fi

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf build demo_out .pytest_cache leaderboard/site
