# One-command workflows. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GEP := $(VENV)/bin/gep
STAMP := $(VENV)/.installed
OUT ?= out
export HF_HUB_OFFLINE := 1

.PHONY: setup test lint demo bench gpu-check clean experiment

setup: $(STAMP)

# Reinstalls only when the pins, the package metadata, the set of top-level packages (an
# editable install maps the packages it saw at install time) or the C source of the compiled
# kernels change (the editable install builds them in place).
$(STAMP): requirements.txt requirements-dev.txt setup.py $(wildcard */__init__.py) \
		$(wildcard gep_ros/*/*.c gep_model/*/*.c)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Whole files go to the two workers, longest first (test/conftest.py LONG_FILES).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: setup
	$(VENV)/bin/flake8

# DEMO_WEIGHTS: the weights replayed. The first demo trains them on synthetic bags (the GEP
# chain: teacher, align, generative, finetune; a few minutes) and later demos reuse them.
demo: DEMO_WEIGHTS ?= $(OUT)/weights/gep_tiny_synthetic
demo: setup
	rm -rf $(OUT)/demo
	$(GEP) synth --out $(OUT)/demo/sample --seconds 2
	$(GEP) bag info $(OUT)/demo/sample
	$(GEP) bag events $(OUT)/demo/sample --topic /event_camera/events --out $(OUT)/demo/events.npz
	$(GEP) synth --out $(OUT)/demo/heldout --seconds 2 --seed 2001
	test -f $(DEMO_WEIGHTS)/model.safetensors || \
		$(PY) -m experiments.run_small --demo-weights $(DEMO_WEIGHTS)
	$(GEP) replay $(OUT)/demo/heldout --weights $(DEMO_WEIGHTS) --events-topic /dvs/events \
		--depth-gt-topic /dvs/depth --labels-gt-topic /dvs/labels \
		--out $(OUT)/demo/replay.mcap --report $(OUT)/demo/report.json

bench: setup
	$(GEP) bench wire --json $(OUT)/bench/wire.json
	$(GEP) bench events --json $(OUT)/bench/events.json
	$(GEP) bench model --json $(OUT)/bench/model.json
	$(GEP) bench pipeline --json $(OUT)/bench/pipeline.json

# The prepared GPU check (a few minutes; its time budgets end it within about 7): the cuda
# backend per precision, representations on the device, a training step per stage under
# autocast, a torchrun NCCL smoke, TensorRT where torch_tensorrt imports.
gpu-check: setup
	$(GEP) bench gpu --json $(OUT)/bench/gpu.json

# The small pretraining experiment (about 16 minutes on 2 idle CPU cores, at most 20): a
# self-supervised teacher, then GEP vs stage 1 alone vs scratch, event-only, at 2, 8 and 32
# labelled sequences, 5 seeds, 3 held-apart bags; writes experiments/results/small.{json,md}.
# Builds everything it needs (bags, caches, teacher) in out/experiment/full.
experiment: setup
	$(PY) -m experiments.run_small

clean:
	rm -rf $(OUT) build install log .pytest_cache .hypothesis *.egg-info
