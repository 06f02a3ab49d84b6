#!/usr/bin/env bash
# Checks the GitHub Action (action.yml) offline: runs its steps' scripts as the runner would
# (GITHUB_ACTION_PATH, GITHUB_OUTPUT, GITHUB_PATH, RUNNER_TEMP), in a scratch repository, and
# checks the build, the SARIF report (repository-relative, from a run in a subdirectory too),
# the exit-code output and the verdict. The upload step is GitHub's own action and is not run;
# the test checks that action.yml hands it the lint step's report.
#
#   scripts/test-action.sh
#
# The build is the install step's build from this checkout, with FLUXFENCE_PROFILE (default
# `dev` here, `release` in the action) into CARGO_TARGET_DIR (default this checkout's target/,
# shared with `cargo test`). Exits non-zero on any unexpected result.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fluxfence-action.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# action.yml runs these scripts, and hands the upload the lint step's report.
for script in action-install.sh action-lint.sh action-verdict.sh; do
  grep -q "\$GITHUB_ACTION_PATH/scripts/$script" "$root/action.yml" ||
    fail "action.yml does not run scripts/$script"
done
grep -q 'sarif_file: ${{ steps.lint.outputs.sarif-file }}' "$root/action.yml" ||
  fail "action.yml does not upload the lint step's SARIF file"

export GITHUB_ACTION_PATH=$root RUNNER_TEMP=$tmp/runner GITHUB_PATH=$tmp/path
export FLUXFENCE_PROFILE=${FLUXFENCE_PROFILE:-dev}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$RUNNER_TEMP"
: > "$GITHUB_PATH"

echo "--- install"
installed=$(FLUXFENCE_VERSION='' bash "$root/scripts/action-install.sh")
[ -x "$installed/fluxfence" ] || fail "no fluxfence in $installed"
grep -qx "$installed" "$GITHUB_PATH" || fail "the install step did not add $installed to GITHUB_PATH"
PATH=$installed:$PATH
echo "ok: $(fluxfence --version) in $installed"

# The workspace: a tenant release with a cross-namespace source (FF101) in kubernetes/apps.
work=$tmp/work
mkdir -p "$work/.git" "$work/kubernetes/apps" "$work/clean"
cat > "$work/kubernetes/apps/team-a.yaml" <<'YAML'
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: team-a
spec:
  interval: 10m
  serviceAccountName: flux-applier
  chart:
    spec:
      chart: podinfo
      sourceRef:
        kind: HelmRepository
        name: podinfo
        namespace: flux-system
YAML
cat > "$work/clean/ok.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team-a
YAML

# One run of the lint and verdict steps in `dir`; the outputs land in $tmp/output.
lint_step() {
  local dir=$1
  : > "$tmp/output"
  (cd "$dir" && GITHUB_OUTPUT=$tmp/output INPUT_PATHS=$2 INPUT_ARGS=${3:-} \
    INPUT_SARIF_FILE=fluxfence.sarif bash "$root/scripts/action-lint.sh") > "$tmp/log" 2>&1 ||
    { cat "$tmp/log"; fail "the lint step itself failed"; }
}
output() { sed -n "s/^$1=//p" "$tmp/output"; }
verdict() {
  EXIT_CODE=$(output exit-code) FAIL_ON_FINDINGS=${1:-true} \
    bash "$root/scripts/action-verdict.sh" > "$tmp/verdict" 2>&1
}
# The SARIF results' locations, one `uriBaseId uri line` each.
locations() {
  python3 -c '
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
print(run["originalUriBaseIds"]["%SRCROOT%"]["uri"])
for r in run["results"]:
    loc = r["locations"][0]["physicalLocation"]
    print(loc["artifactLocation"].get("uriBaseId"), loc["artifactLocation"]["uri"], loc["region"]["startLine"])
' "$1"
}

echo "--- findings: exit code 1, SARIF written, the verdict fails"
lint_step "$work" kubernetes
[ "$(output exit-code)" = 1 ] || { cat "$tmp/log"; fail "exit-code is $(output exit-code), not 1"; }
[ "$(output sarif-file)" = fluxfence.sarif ] || fail "no sarif-file output"
grep -q 'error\[FF101\]' "$tmp/log" || { cat "$tmp/log"; fail "the log has no text report"; }
locations "$work/fluxfence.sarif" > "$tmp/from-root"
grep -qx "file://$(cd "$work" && pwd -P)/" "$tmp/from-root" || { cat "$tmp/from-root"; fail "%SRCROOT% is not the workspace"; }
grep -qx '%SRCROOT% kubernetes/apps/team-a.yaml 15' "$tmp/from-root" ||
  { cat "$tmp/from-root"; fail "the FF101 location is not repository-relative"; }
if verdict; then fail "the verdict passed on deny findings"; fi
grep -q '::error title=fluxfence::deny findings' "$tmp/verdict" || fail "the verdict said nothing"
verdict false || { cat "$tmp/verdict"; fail "fail-on-findings: false still failed"; }
echo "ok"

echo "--- the same from a subdirectory, with more arguments"
lint_step "$work/kubernetes" apps "--ignore FF003 --quiet"
locations "$work/kubernetes/fluxfence.sarif" > "$tmp/from-sub"
diff "$tmp/from-root" "$tmp/from-sub" || fail "the SARIF locations differ from a subdirectory"
if grep -q 'Found ' "$tmp/log"; then fail "--quiet from args was not passed"; fi
echo "ok"

echo "--- clean: exit code 0, the verdict passes"
lint_step "$work" clean
[ "$(output exit-code)" = 0 ] || { cat "$tmp/log"; fail "exit-code is $(output exit-code), not 0"; }
verdict || { cat "$tmp/verdict"; fail "the verdict failed on a clean run"; }
echo "ok"

echo "--- an error: exit code 2 fails even with fail-on-findings: false"
printf 'kind: [\n' > "$work/clean/broken.yaml"
lint_step "$work" clean
[ "$(output exit-code)" = 2 ] || { cat "$tmp/log"; fail "exit-code is $(output exit-code), not 2"; }
if verdict false; then fail "the verdict passed on a read error"; fi
echo "ok"
echo "PASS"
