#!/usr/bin/env bash
# The `fluxfence-build` pre-commit hook (.pre-commit-hooks.yaml): lints the files pre-commit
# passes with a fluxfence built from this checkout, pre-commit's own clone of the hook's
# revision. The first run builds it (cargo, a few minutes); later runs reuse the build, which
# lives in the clone and so matches the revision. Needs cargo on PATH, not fluxfence.
#
#   FLUXFENCE_HOOK_PROFILE     the Cargo profile to build (release; `dev` for a quicker build)
#   FLUXFENCE_HOOK_TARGET_DIR  where to build (the clone's target/; tests share one)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
profile=${FLUXFENCE_HOOK_PROFILE:-release}
target_dir=${FLUXFENCE_HOOK_TARGET_DIR:-$here/target}
case "$profile" in
  dev) built=$target_dir/debug/fluxfence ;;
  *) built=$target_dir/$profile/fluxfence ;;
esac
# A shared target directory may hold another revision's build: let cargo decide there.
if [ ! -x "$built" ] || [ -n "${FLUXFENCE_HOOK_TARGET_DIR:-}" ]; then
  command -v cargo > /dev/null ||
    { echo "fluxfence hook: cargo is needed to build fluxfence (https://rustup.rs)" >&2; exit 2; }
  [ -x "$built" ] || echo "fluxfence hook: building fluxfence once (cargo, profile $profile)" >&2
  (cd "$here" && cargo build --locked --quiet --profile "$profile" \
    --target-dir "$target_dir" -p fluxfence --bin fluxfence) >&2
fi
exec "$built" lint "$@"
