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

.PHONY: install demo test test-fast browser screenshots deepx-dock bench seed-claims lock clean

install: $(STAMP)

# torch is pinned to the CPU wheel first (2.13.0), so nothing pulls a multi-GB CUDA build. A fresh install takes
# about 5 minutes and .venv ends at 2.1-2.3 GB; each step says what it installs.
$(STAMP): pyproject.toml constraints.txt CMakeLists.txt $(wildcard cpp/*.cpp cpp/*.hpp)
	@echo "==> [1/6] virtual environment $(VENV) ($(PYTHON)); a fresh install takes ~5 min and ~2.3 GB"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/6] pip (upgrade)"
	@$(call pip_install,$(PY),-c constraints.txt --upgrade pip)
	@echo "==> [3/6] torch 2.13.0 (CPU wheel, ~200 MB download, the longest step)"
	@$(call pip_install,$(PY),-c constraints.txt torch==2.13.0)
	@echo "==> [4/6] build tools: scikit-build-core, pybind11"
	@$(call pip_install,$(PY),-c constraints.txt "scikit-build-core>=0.10" "pybind11>=2.12")
	@echo "==> [5/6] hambench and its dependencies (editable; compiles the C++ core, ~1 min)"
	@$(call pip_install,$(PY),-c constraints.txt --no-build-isolation -e ".[test]")
	@# scikit-build-core's editable .pth also puts the source root on sys.path, which would make the folders
	@# models/, pipelines/, benchmarks/ importable as top-level packages: keep only its import-hook line
	@$(PY) -c "import pathlib, site; [p.write_text(''.join(l for l in p.read_text().splitlines(True) if l.startswith('import '))) for d in site.getsitepackages() for p in pathlib.Path(d).glob('_editable_skbc_hambench.pth')]"
	@echo "==> [6/6] check: hambench._core imports, torch is 2.13.0"
	@$(PY) -c "import hambench._core, torch; assert torch.__version__.startswith('2.13.0')"
	@touch $@
	@echo "==> installed: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

demo: install
	$(VENV)/bin/hambench demo -o demo_out

test: install browser deepx-dock
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# everything but the tests marked slow (each over 20 s: the demo, DFT end to end); CI runs `make test`
test-fast: install browser deepx-dock
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

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

# the README's screenshots (docs/leaderboard-*.png) of the repository's site at 1,280 px, in Debian's Chromium
screenshots: install browser
	$(PY) -c "from hambench.leaderboard.site import build_site; from hambench.leaderboard.testing import \
	  site_screenshots; build_site(None, 'build/site'); print(*site_screenshots('build/site', 'docs'), sep='\n')"

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
	  { $(call pip_install,$(DOCK_VENV)/bin/python,-c constraints-deepx-dock.txt deepx-dock==0.9.11); } && \
	  $(DOCK_VENV)/bin/dock --help >/dev/null && touch $(DOCK_VENV)/.installed; \
	fi

# every timing benchmark (minutes each); the seeds' re-run experiment (hours, writes benchmarks/results/
# bench_seed_claims.*) is its own target
bench: install
	for b in $(filter-out benchmarks/bench_seed_claims.py,$(wildcard benchmarks/bench_*.py)); do $(PY) $$b || exit 1; done

seed-claims: install
	$(PY) benchmarks/bench_seed_claims.py

# Upgrading: re-resolve every dependency to the newest release the ranges in pyproject.toml allow, in a scratch venv
# (torch stays 2.13.0), and rewrite constraints.txt / constraints-deepx-dock.txt; then `make test` and commit.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	@$(call pip_install,$(LOCK_VENV)/bin/python,--upgrade pip)
	@$(call pip_install,$(LOCK_VENV)/bin/python,torch==2.13.0 "scikit-build-core>=0.10" "pybind11>=2.12")
	@$(call pip_install,$(LOCK_VENV)/bin/python,--no-build-isolation ".[test]")
	{ sed -n '/^#/p' constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^hambench' | \
	  sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' | sort -f; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	@if [ -n "$(PY312)" ]; then rm -rf $(LOCK_VENV)-dock && $(PY312) -m venv $(LOCK_VENV)-dock && \
	  { $(call pip_install,$(LOCK_VENV)-dock/bin/python,deepx-dock==0.9.11); } && \
	  { sed -n '/^#/p' constraints-deepx-dock.txt; $(LOCK_VENV)-dock/bin/python -m pip freeze --all | sort -f; } \
	    > constraints-deepx-dock.txt.new && mv constraints-deepx-dock.txt.new constraints-deepx-dock.txt; fi
	rm -rf $(LOCK_VENV) $(LOCK_VENV)-dock
	@echo "==> constraints.txt rewritten: run make test, then commit it"

clean:
	rm -rf build demo_out .pytest_cache leaderboard/site
