#!/usr/bin/env bash
# Checks the pre-commit hooks in .pre-commit-hooks.yaml with the real pre-commit:
# `pre-commit try-repo <this repository> fluxfence --files ...` in a scratch Git repository must
# fail on a manifest with a cross-namespace source reference (FF101) and pass on a clean one;
# so must `fluxfence-build`, with no fluxfence on PATH (it builds its own with cargo).
#
#   scripts/test-pre-commit.sh
#
# try-repo clones this repository's committed state: commit .pre-commit-hooks.yaml first.
# The hook is `language: system`, so the fluxfence under test goes first on PATH: the release
# build (built here) or FLUXFENCE=/path/to/fluxfence. PRE_COMMIT_VENV reuses a virtualenv
# holding pre-commit instead of making a new one. Exits non-zero on any unexpected result.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/fluxfence-pre-commit.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

git -C "$root" cat-file -e HEAD:.pre-commit-hooks.yaml 2>/dev/null ||
  fail ".pre-commit-hooks.yaml is not committed in $root (try-repo clones HEAD)"

if [ -n "${FLUXFENCE:-}" ]; then
  bin=$(cd "$(dirname "$FLUXFENCE")" && pwd)
else
  (cd "$root" && cargo build --release -q -p fluxfence)
  bin=$root/target/release
fi
[ -x "$bin/fluxfence" ] || fail "no fluxfence in $bin"
# PATH without any fluxfence, for the hook that builds its own.
path_without_fluxfence=$(printf '%s' "$PATH" | tr ':' '\n' |
  while read -r dir; do [ -x "$dir/fluxfence" ] || printf '%s:' "$dir"; done)
path_without_fluxfence=${path_without_fluxfence%:}
export PATH="$bin:$PATH"

venv=${PRE_COMMIT_VENV:-$tmp/venv}
if [ ! -x "$venv/bin/pre-commit" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pre-commit
fi
export PRE_COMMIT_HOME=$tmp/cache   # leave the user's hook cache alone
echo "pre-commit $("$venv/bin/pre-commit" --version | cut -d' ' -f2), $(fluxfence --version)"

# The user's repository.
work=$tmp/work
mkdir -p "$work/apps"
cd "$work"
git init -q
git config user.email test@example.invalid
git config user.name test
cat > apps/team-a.yaml <<'EOF'
# A tenant's release pointing at a chart source in flux-system: FF101 (and FF111: no
# ServiceAccount flux-applier in team-a).
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
EOF
cat > apps/cluster-config.yaml <<'EOF'
# The multi-tenant layout: release and source in the configuration namespace, deployed into
# the tenant's namespace.
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: cluster-config
spec:
  interval: 10m
  serviceAccountName: flux-applier
  targetNamespace: team-a
  releaseName: podinfo
  storageNamespace: team-a
  chart:
    spec:
      chart: podinfo
      sourceRef:
        kind: HelmRepository
        name: podinfo
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: cluster-config
spec:
  interval: 1h
  url: https://stefanprodan.github.io/podinfo
EOF
git add apps
git commit -q -m fixtures

hook=fluxfence
try() {
  "$venv/bin/pre-commit" try-repo "$root" "$hook" --verbose --files "$@" > "$tmp/out" 2>&1
}

echo "--- a violating file"
start=$(date +%s)
if try apps/team-a.yaml; then
  cat "$tmp/out"; fail "the hook passed on a file with a cross-namespace source reference"
fi
cat "$tmp/out"
grep -q 'FF101' "$tmp/out" || fail "the hook failed, but without the FF101 finding"
echo "ok: failed with FF101 ($(($(date +%s) - start)) s including the clone)"

echo "--- a clean file"
if ! try apps/cluster-config.yaml; then
  cat "$tmp/out"; fail "the hook failed on a clean file"
fi
cat "$tmp/out"
echo "ok: passed"

echo "--- a file the hook does not match"
printf 'not a manifest\n' > README.md
git add README.md
try README.md || { cat "$tmp/out"; fail "the hook failed on README.md"; }
grep -q 'no files to check' "$tmp/out" || { cat "$tmp/out"; fail "the hook ran on README.md"; }
echo "ok: skipped"

echo "--- fluxfence-build, with no fluxfence on PATH"
hook=fluxfence-build
# The build goes to this checkout's target directory (dev profile, shared with `cargo test`)
# rather than a release build in pre-commit's clone: the same script, minutes less.
export FLUXFENCE_HOOK_PROFILE=${FLUXFENCE_HOOK_PROFILE:-dev}
export FLUXFENCE_HOOK_TARGET_DIR=${FLUXFENCE_HOOK_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}
PATH=$path_without_fluxfence
! command -v fluxfence > /dev/null || fail "fluxfence is still on PATH: $(command -v fluxfence)"
if try apps/team-a.yaml; then
  cat "$tmp/out"; fail "fluxfence-build passed on a file with a cross-namespace source reference"
fi
cat "$tmp/out"
grep -q 'FF101' "$tmp/out" || fail "fluxfence-build failed, but without the FF101 finding"
try apps/cluster-config.yaml || { cat "$tmp/out"; fail "fluxfence-build failed on a clean file"; }
echo "ok: failed with FF101, passed on the clean file"
echo "PASS"
