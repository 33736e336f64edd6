# The two set-up commands of the README:  `make demo`  and  `make test`.
# Both create their own virtual environment (.venv) and need nothing installed by hand.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
INSTALL_LOG := build/install.log
# pip install, printing one line per package (what is collected, what got installed) and keeping pip's whole
# output in $(INSTALL_LOG); on failure the log's last lines.   $(call pip_install,PYTHON,ARGS)
pip_install = mkdir -p build && echo '+ pip install $(2)' >> $(INSTALL_LOG) && \
  $(1) -m pip --disable-pip-version-check install --progress-bar off $(2) 2>&1 | tee -a $(INSTALL_LOG) | \
  { grep --line-buffered -E '^(Collecting|Processing|Installing collected|Building wheel|Successfully|ERROR)' | \
    sed -u -E 's@^Processing .*/([^/ ]+)( \(from .*)?$$@Processing \1@; s/ \(from .*\)$$//; s/^/    /' || true; } || \
  { echo 'make: pip install $(2) failed; the end of $(INSTALL_LOG):'; tail -n 15 $(INSTALL_LOG); exit 1; }
STAMP   := $(VENV)/.hambench-installed
SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTEST_ARGS ?=

.PHONY: install demo test browser deepx-dock bench seed-claims clean

install: $(STAMP)

# torch is pinned to the CPU wheel first (2.13.0), so nothing pulls a multi-GB CUDA build. A fresh install takes
# about 5 minutes and .venv ends at 2.1-2.3 GB; each step says what it installs.
$(STAMP): pyproject.toml CMakeLists.txt $(wildcard cpp/*.cpp cpp/*.hpp)
	@echo "==> [1/6] virtual environment $(VENV) ($(PYTHON)); a fresh install takes ~5 min and ~2.3 GB"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/6] pip (upgrade)"
	@$(call pip_install,$(PY),--upgrade pip)
	@echo "==> [3/6] torch 2.13.0 (CPU wheel, ~200 MB download, the longest step)"
	@$(call pip_install,$(PY),torch==2.13.0)
	@echo "==> [4/6] build tools: scikit-build-core, pybind11"
	@$(call pip_install,$(PY),"scikit-build-core>=0.10" "pybind11>=2.12")
	@echo "==> [5/6] hambench and its dependencies (editable; compiles the C++ core, ~1 min)"
	@$(call pip_install,$(PY),--no-build-isolation -e ".[test]")
	@echo "==> [6/6] check: hambench._core imports, torch is 2.13.0"
	@$(PY) -c "import hambench._core, torch; assert torch.__version__.startswith('2.13.0')"
	@touch $@
	@echo "==> installed: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

demo: install
	$(VENV)/bin/hambench demo -o demo_out

test: install browser deepx-dock
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

# The DeepH-dock interop tests (tests/test_deeph_format.py) run DeepH-dock's own `dock` command; deepx-dock needs
# Python >= 3.12, so it lives in a throwaway 3.12 venv under build/ (built once, ~1 min; skipped without a 3.12).
DOCK_VENV := build/deepx-dock
PY312   ?= $(shell { python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null; ls -1 \
             $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 /usr/bin/python3.12 2>/dev/null; } | head -n1)
deepx-dock:
	@if [ -f $(DOCK_VENV)/.installed ]; then :; \
	elif [ -z "$(PY312)" ]; then echo "note: no Python 3.12 here: the DeepH-dock interop tests will skip"; \
	else echo "==> deepx-dock 0.9.11 in a throwaway Python 3.12 venv ($(PY312) -> $(DOCK_VENV), ~1 min)"; \
	  rm -rf $(DOCK_VENV) && $(PY312) -m venv $(DOCK_VENV) && \
	  { $(call pip_install,$(DOCK_VENV)/bin/python,deepx-dock==0.9.11); } && \
	  $(DOCK_VENV)/bin/dock --help >/dev/null && touch $(DOCK_VENV)/.installed; \
	fi

# every timing benchmark (minutes each); the seeds' re-run experiment (hours, writes benchmarks/results/
# bench_seed_claims.*) is its own target
bench: install
	for b in $(filter-out benchmarks/bench_seed_claims.py,$(wildcard benchmarks/bench_*.py)); do $(PY) $$b || exit 1; done

seed-claims: install
	$(PY) benchmarks/bench_seed_claims.py

clean:
	rm -rf build demo_out .pytest_cache leaderboard/site
