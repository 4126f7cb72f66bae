# Every target only calls a script in scripts/. The scripts create .venv and install what they need from pyproject.toml.
VENV ?= .venv
export VENV

.DEFAULT_GOAL := all
.PHONY: all check install test lint bench contracts

all:  ## normalise the sources, report API changes, regenerate the client, verify; swap all in or nothing [ACK_BREAKING=1]
	@ACK_BREAKING="$(ACK_BREAKING)" scripts/build.sh

check:  ## regenerate into a temporary folder; fail if the spec, changelog or client are stale; print the change report
	@scripts/build.sh --check

install:  ## create .venv and install the project with its extras
	@scripts/bootstrap.sh

test:  ## lint, type-check and run every test [PYTEST_ARGS="--junitxml=reports/junit.xml"]
	@scripts/test.sh $(PYTEST_ARGS)

lint:  ## ruff and mypy --strict
	@scripts/lint.sh

bench:  ## benchmarks and the fault soak -> docs/benchmarks.md (+ .json, plots)
	@scripts/bench.sh

contracts:  ## the contract suite; BASE_URL=... [AUTH=bearer] [MAX_PAID_CALLS=n] [ENDPOINT=...] [REQUIRE_LIVE=1] for another server
	@BASE_URL="$(BASE_URL)" AUTH="$(AUTH)" MAX_PAID_CALLS="$(MAX_PAID_CALLS)" ENDPOINT="$(ENDPOINT)" \
		REQUIRE_LIVE="$(REQUIRE_LIVE)" scripts/contracts.sh
