# `make run` and `make test` set everything up on a fresh machine (a venv in .venv).
# CPU machines pin torch's CPU build through constraints-cpu.txt; on a GPU machine use
# `make venv CONSTRAINTS= EXTRAS=dev,coco,wandb,gpu`.
VENV ?= .venv
PYTHON ?= python3
CONSTRAINTS ?= constraints-cpu.txt
EXTRAS ?= dev,coco,wandb
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# two pytest workers: many tests wait on subprocesses (a run's imports, Java for METEOR) and
# leave a core idle; TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS ?= 2

.PHONY: venv run test test-slow calibrate bench clean
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[$(EXTRAS)]'
	touch $@

run: venv
	$(PY) train.py

test: venv
	$(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal) $(PYTEST_ARGS)

test-slow: venv
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# the regime statistics R1-R5 of the default config against LLaVA-1.5-7B on UCIT (docs/calibration.md);
# CALIBRATE_ARGS=--quick for smaller test sets
calibrate: venv
	$(PY) experiments/calibrate.py $(CALIBRATE_ARGS)

# speed goals as ratios measured side by side (docs/performance.md); writes bench/results.json
bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
