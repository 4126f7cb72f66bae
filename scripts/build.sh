#!/usr/bin/env bash
# `make`: normalise the sources into specs/openapi.yaml, regenerate generated/, verify both, and swap them in
# together (or nothing, if any step fails). Arguments go to scripts/regenerate.py (e.g. --check).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec "${VENV:-.venv}/bin/python" scripts/regenerate.py "$@"
