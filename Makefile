# Every target only calls a script in scripts/. The scripts create .venv and install what they need from pyproject.toml.
VENV ?= .venv
export VENV

.DEFAULT_GOAL := all
.PHONY: all install test lint bench contracts

all:  ## normalise the sources, regenerate the client, verify, summarise
	@scripts/build.sh

install:  ## create .venv and install the project with its extras
	@scripts/bootstrap.sh

test:  ## lint, type-check and run every test
	@scripts/test.sh

lint:  ## ruff and mypy --strict
	@scripts/lint.sh

bench:  ## benchmarks and the fault soak -> docs/benchmarks.md (+ .json, plots)
	@scripts/bench.sh

contracts:  ## the contract suite; BASE_URL=... [AUTH=bearer] [MAX_PAID_CALLS=n] [ENDPOINT=...] for another server
	@BASE_URL="$(BASE_URL)" AUTH="$(AUTH)" MAX_PAID_CALLS="$(MAX_PAID_CALLS)" ENDPOINT="$(ENDPOINT)" scripts/contracts.sh
