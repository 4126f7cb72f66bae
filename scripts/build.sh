#!/usr/bin/env bash
# `make`: normalise the sources into specs/openapi.yaml, regenerate generated/, verify both, and say what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY="${VENV:-.venv}/bin/python"
echo "== normalise: specs/sources + overrides/ -> specs/openapi.yaml"
PYTHONPATH=scripts "$PY" -m normaliser
echo "== generate: specs/openapi.yaml -> generated/fal_kontext_api"
"$PY" scripts/generate_client.py
echo "== verify"
"$PY" -m openapi_spec_validator specs/openapi.yaml
"$PY" -m mypy --strict --no-error-summary generated/fal_kontext_api && echo "generated/fal_kontext_api: mypy --strict clean"
