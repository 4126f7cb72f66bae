#!/usr/bin/env bash
# `make lint`: ruff (lint and format check) and mypy --strict over the hand-written code, tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
BIN="${VENV:-.venv}/bin"
"$BIN/ruff" check src scripts tests contracts bench
"$BIN/ruff" format --check src scripts tests contracts bench
"$BIN/mypy" src/fal_kontext src/fal_kontext_emulator scripts/normaliser scripts/generate_client.py scripts/regenerate.py scripts/typed_options.py bench contracts tests
