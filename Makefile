# `make run` and `make test` work on a fresh machine: both create .venv and install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-fast lint data compile serve bench clean chromium postgres mutate

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==26.3
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

data/corpus.jsonl: | $(STAMP)
	longdoc data demo

data: data/corpus.jsonl

run: setup data
	longdoc run

# The browser test drives Debian's chromium (no browser download); install it where we can.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the web page test will be skipped"

# The team-scale tests start PostgreSQL (Debian's package) in a temporary folder on loopback.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
		echo "PostgreSQL not installed: tests/test_team_server.py will fail"

# lint-imports: the layers in pyproject.toml [tool.importlinter] (a second; an upward import fails the run).
test: setup chromium postgres
	lint-imports
	pytest

test-fast: setup
	pytest -m "not slow"

lint: setup
	ruff check src components pipelines serving tests
	lint-imports

compile: setup
	longdoc pipeline compile

serve: setup
	longdoc serve

# Mutation testing of the modules that decide (pyproject.toml [tool.mutmut]); a score per module, 80% at least.
# Incremental: results are kept in mutants/, and only changed functions are tested again.
mutate: setup
	mutmut run --max-children 2
	python tools/mutation_report.py

bench: setup data
	python -m bench.run

clean:
	rm -rf outputs mlruns.db mlartifacts .pytest_cache mutants
