#!/usr/bin/env bash
# `make bench`: run every benchmark and write docs/benchmarks.md, docs/benchmarks.json and the plots. Extra arguments go to `python -m bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PYTHONPATH=scripts "${VENV:-.venv}/bin/python" -m bench "$@"
