# Two commands a user needs: `make reproduce` and `make test`. Both build .venv first if missing.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.lmexpr-installed
PROFILE ?= smoke

.PHONY: venv reproduce test chromium bench lab clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	$(VPY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lmexpr-nb)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

# synthetic default data -> preprocessing -> every notebook, headless, into outputs/$(PROFILE)/
reproduce: $(STAMP)
	$(VPY) -m lmexpr_nb run --profile $(PROFILE)

# two workers (pytest-xdist, one test file per worker at a time; xdist hands out the files with the
# most tests first, so the one-test smoke run starts when most short tests are done, and the rest
# run beside it). Measured here: 516 s vs 624 s with the smoke run first (2 + 1 torch threads on 2
# cores slow both) and ~630 s one after the other
test: $(STAMP) chromium
	$(VPY) -m pytest -q -n 2 --dist loadfile --durations=15

# Debian's chromium for tests/test_browser.py, before pytest starts (never inside a test): nothing
# when /usr/bin/chromium is there, else apt-get as root; where it cannot be had, the line says why
# and the browser tests skip with that reason (where CI is set, as .ci/run sets it, they fail)
chromium:
	@test -x /usr/bin/chromium || $(PYTHON) tests/browser.py install-chromium

bench: $(STAMP)
	$(VPY) -m lmexpr_nb bench preprocess
	$(VPY) -m lmexpr_nb bench train
	$(VPY) -m lmexpr_nb bench infer

# JupyterLab on notebooks/ (adds --allow-root only when run as root, and says so; see lmexpr_nb/runner/lab.py)
lab: $(STAMP)
	$(VPY) -m lmexpr_nb.runner.lab notebooks/

clean:
	rm -rf outputs .pytest_cache
