#!/usr/bin/env bash
# action.yml, step "Lint": the text report in the job log, SARIF to a file; the exit code is an
# output for the verdict step, so that the upload runs first whatever it is.
#
#   INPUT_PATHS       files or directories, separated by spaces (.)
#   INPUT_ARGS        more arguments for `fluxfence lint`, separated by spaces
#   INPUT_SARIF_FILE  the SARIF report (fluxfence.sarif)
#
# Writes `exit-code` and `sarif-file` to $GITHUB_OUTPUT; exits 0.
set -uo pipefail

sarif=${INPUT_SARIF_FILE:-fluxfence.sarif}
read -r -a paths <<< "${INPUT_PATHS:-.}"
read -r -a args <<< "${INPUT_ARGS:-}"
[ ${#paths[@]} -gt 0 ] || paths=(.)
fluxfence lint --format text --format "sarif=$sarif" "${args[@]}" -- "${paths[@]}"
code=$?
output=${GITHUB_OUTPUT:-/dev/null}
echo "exit-code=$code" >> "$output"
if [ -s "$sarif" ]; then
  echo "sarif-file=$sarif" >> "$output"
fi
exit 0
