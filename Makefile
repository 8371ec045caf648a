# One-command workflows. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GEP := $(VENV)/bin/gep
STAMP := $(VENV)/.installed
OUT ?= out
export HF_HUB_OFFLINE := 1

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

# Reinstalls only when the pins, the package metadata or the set of top-level packages
# change (an editable install maps the packages it saw at install time).
$(STAMP): requirements.txt requirements-dev.txt setup.py $(wildcard */__init__.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2

lint: setup
	$(VENV)/bin/flake8

demo: setup
	rm -rf $(OUT)/demo
	$(GEP) bag sample --out $(OUT)/demo/sample
	$(GEP) bag info $(OUT)/demo/sample
	$(GEP) bag events $(OUT)/demo/sample --topic /event_camera/events --out $(OUT)/demo/events.npz

bench: setup
	$(GEP) bench wire --json $(OUT)/bench/wire.json
	$(GEP) bench model --json $(OUT)/bench/model.json

clean:
	rm -rf $(OUT) build install log .pytest_cache .hypothesis *.egg-info
