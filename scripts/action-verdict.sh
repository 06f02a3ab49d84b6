#!/usr/bin/env bash
# action.yml, step "Verdict": fails the job as fluxfence's exit code says, after the upload.
#
#   EXIT_CODE         the lint step's exit code (empty: it did not run to the end)
#   FAIL_ON_FINDINGS  `false`: deny findings (exit 1) pass; errors (2) never do
set -euo pipefail

code=${EXIT_CODE:-}
case "$code" in
  0) exit 0 ;;
  1)
    if [ "${FAIL_ON_FINDINGS:-true}" = false ]; then
      echo "fluxfence: deny findings, not failing (fail-on-findings: false)"
      exit 0
    fi
    echo "::error title=fluxfence::deny findings (see the Lint step and code scanning)"
    exit 1 ;;
  "") echo "::error title=fluxfence::the lint step gave no exit code"; exit 2 ;;
  *) echo "::error title=fluxfence::fluxfence could not lint (exit $code; see the Lint step)"; exit "$code" ;;
esac
