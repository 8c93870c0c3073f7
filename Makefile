# Two commands do everything on a fresh machine:
#   make demo   set up, then run the whole pipeline offline on the bundled digits data
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-reliability test-online bench clean-demo

# PYTHONWARNINGS on the install: setuptools' editable-install notice is for packaging authors, not
# users; -W on the check: sweeps 0.3 declares a pydantic v1 config key (app/ imports it quietly too).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -W "ignore:Valid config keys:UserWarning" -c "import torch, torchvision, wandb, sweeps; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'wandb', wandb.__version__)"
	touch $(STAMP)

setup: $(STAMP)

# The whole flow on the embedded (offline) backend. Runs in demo/ so it leaves the checkout clean.
demo: $(STAMP)
	@mkdir -p demo
	cd demo && ../$(PY) ../app/pipelines/data_prep.py --dataset digits
	cd demo && ../$(PY) ../app/pipelines/train.py
	cd demo && ../$(PY) ../app/pipelines/train.py --tune --max_sweep 4 --epochs 3 --sweep-config ../sweep.yaml
	cd demo && ../$(PY) ../app/pipelines/train.py --retrain --epochs 10
	cd demo && ../$(PY) ../app/pipelines/evaluate.py --promote
	cd demo && ../$(PY) ../app/pipelines/registry.py list

# One pytest worker per core (pytest-xdist; three on this 2-core VM were slower than two), tests
# handed out as workers free up (worksteal: a few tests take minutes). Most scripts run inside the
# test's process (tests/in_process.py); the suite took 24.8 min here with a process per script run.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal

# The tests marked slow, which make test leaves out: long fault runs, the own-images flow to 95%,
# torch.compile's real compile, the demo's steps twice (same production model, >= 98%).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The reliability and security suite, slow fault injection included.
test-reliability: $(STAMP)
	$(PY) -m pytest -q tests/test_reliability.py tests/test_security.py tests/test_lifecycle.py -m "slow or not slow"

# The whole flow against real W&B; needs WANDB_API_KEY (and WANDB_ENTITY) in the environment, skipped otherwise.
test-online: $(STAMP)
	$(PY) -m pytest -q -m online tests/test_online.py -rs

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_startup.py
	$(PY) benchmarks/bench_serve.py
	$(PY) benchmarks/bench_stream.py
	$(PY) benchmarks/bench_near_duplicates.py quality
	mkdir -p demo && cd demo && ../$(PY) ../app/pipelines/data_prep.py --dataset digits && ../$(PY) ../benchmarks/bench_quality.py
	$(PY) benchmarks/bench_quality.py --kind patterns
	$(PY) benchmarks/bench_quality.py --kind objects

clean-demo:
	rm -rf demo
