#!/usr/bin/env bash
# `make contracts`: the contract suite, with a JUnit report in reports/ and a readable summary.
#   make contracts                                   # against a local emulator started here (free)
#   make contracts BASE_URL=https://queue.fal.run    # live fal: FAL_KEY from the environment; costs money (README)
#   make contracts BASE_URL=https://proxy.example AUTH=bearer   # an aggregator: FAL_KONTEXT_TOKEN
# MAX_PAID_CALLS (default 2) caps the submits to a remote server; ENDPOINT picks the endpoint the paid check uses.
# REQUIRE_LIVE=1 turns a missing FAL_KEY / FAL_KONTEXT_TOKEN from a skip into a failure (scheduled CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
BIN="${VENV:-.venv}/bin"
mkdir -p reports
args=(contracts -p no:cacheprovider --junitxml=reports/contracts-pytest.xml)
[ -n "${BASE_URL:-}" ] && args+=(--contract-base-url "$BASE_URL")
[ -n "${AUTH:-}" ] && args+=(--contract-auth "$AUTH")
[ -n "${MAX_PAID_CALLS:-}" ] && args+=(--max-paid-calls "$MAX_PAID_CALLS")
[ -n "${ENDPOINT:-}" ] && args+=(--contract-endpoint "$ENDPOINT")
[ -n "${REQUIRE_LIVE:-}" ] && [ "${REQUIRE_LIVE}" != "0" ] && args+=(--require-live)
echo "== contracts: pytest ${args[*]}"
status=0
"$BIN/python" -m pytest "${args[@]}" || status=$?

if [ -z "${BASE_URL:-}" ]; then
  # The schemathesis CLI with the repository's schemathesis.toml, as a user would run it, against an emulator.
  log=$(mktemp)
  "$BIN/fal-kontext" mock --port 0 --runners 32 --queue-wait 0.02 --run-time 0.05 >"$log" 2>&1 &
  mock=$!
  trap 'kill $mock 2>/dev/null || true; rm -f "$log"' EXIT
  url=""
  for _ in $(seq 1 100); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n 1 || true)
    [ -n "$url" ] && grep -qi 'ready' "$log" && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "contracts: the emulator did not start:"; cat "$log"; exit 1; }
  echo "== contracts: schemathesis run specs/openapi.yaml --url $url --checks all"
  FAL_KEY=test-key "$BIN/schemathesis" run specs/openapi.yaml --url "$url" --checks all --seed 1 \
    --report junit --report-junit-path reports/contracts-schemathesis.xml || status=$?
fi
echo "== contracts: JUnit reports in reports/"
exit "$status"
