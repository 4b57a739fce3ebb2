# Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash

.PHONY: demo test test-quick lint bench-trainer

# The main job: search the offline pretrained hub on a Fashion-MNIST subset (CPU, 8 minutes).
demo:
	@v=$$(scripts/setup-env.sh | tail -n 1) && $$v/bin/hubtune run fashion-mnist:2000 --hub offline --budget 8m --max-epochs 8 --out runs/demo

test:
	@v=$$(scripts/setup-env.sh --with-peers | tail -n 1) && $$v/bin/ruff check src tests benchmarks && $$v/bin/python -m pytest -q --durations=15

# While iterating: the suite without the tests marked slow (tests/conftest.py).
test-quick:
	@v=$$(scripts/setup-env.sh --with-peers | tail -n 1) && $$v/bin/python -m pytest -q -m "not slow"

lint:
	@v=$$(scripts/setup-env.sh | tail -n 1) && $$v/bin/ruff check src tests benchmarks

bench-trainer:
	@v=$$(scripts/setup-env.sh | tail -n 1) && $$v/bin/python benchmarks/trainer_throughput.py
