#!/usr/bin/env bash
# `make test`: lint, then every test (tests/ and contracts/). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/lint.sh
"${VENV:-.venv}/bin/python" -m pytest "$@"
