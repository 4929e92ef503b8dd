#!/usr/bin/env bash
# The test suite: builds, brings up what the tests need, runs mocha. The last line is always
# `N passed, N failed`, and the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! npx tsc -p .; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx mocha --reporter ./test/summary-reporter.cjs "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# A crash before mocha's summary still has to end with the summary line.
if ! tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
  echo "mocha exited with status $status before reporting"
  echo "0 passed, 1 failed"
  [ "$status" -eq 0 ] && status=1
fi
exit "$status"
