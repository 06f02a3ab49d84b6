#!/usr/bin/env bash
# action.yml, step "Install fluxfence": puts fluxfence on PATH for the steps after it.
#
#   FLUXFENCE_VERSION  a release tag: its `fluxfence-<target>.tar.gz` for this runner is
#                      downloaded; without one for the runner (or with no tag), fluxfence is
#                      built with cargo: the tag with `cargo install --git`, no tag from the
#                      action's own checkout ($GITHUB_ACTION_PATH)
#   FLUXFENCE_PROFILE  the Cargo profile of a build from the checkout (release)
#   CARGO_TARGET_DIR   where that build goes (the checkout's target/)
#
# Appends the directory to $GITHUB_PATH when it is set, and prints it.
set -euo pipefail

action=${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}
bin=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/fluxfence-bin
mkdir -p "$bin"
version=${FLUXFENCE_VERSION:-}
repository=https://github.com/fluxfence/fluxfence

release_target() {
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) echo x86_64-unknown-linux-gnu ;;
    Linux-aarch64) echo aarch64-unknown-linux-gnu ;;
    Darwin-arm64) echo aarch64-apple-darwin ;;
    Darwin-x86_64) echo x86_64-apple-darwin ;;
    *) echo "" ;;
  esac
}

download() {
  local target url
  target=$(release_target)
  [ -n "$target" ] || return 1
  url=$repository/releases/download/$version/fluxfence-$target.tar.gz
  echo "fluxfence: downloading $url" >&2
  curl -fsSL --retry 3 "$url" | tar -xzf - -C "$bin" fluxfence
}

if [ -n "$version" ]; then
  if ! download; then
    echo "fluxfence: no release binary of $version for this runner; building it" >&2
    cargo install --locked --quiet --root "$bin/.." --git "$repository" --tag "$version" fluxfence
  fi
else
  profile=${FLUXFENCE_PROFILE:-release}
  target_dir=${CARGO_TARGET_DIR:-$action/target}
  echo "fluxfence: building $action (cargo, profile $profile)" >&2
  (cd "$action" && cargo build --locked --quiet --profile "$profile" --target-dir "$target_dir" \
    -p fluxfence --bin fluxfence)
  case "$profile" in
    dev) built=$target_dir/debug/fluxfence ;;
    *) built=$target_dir/$profile/fluxfence ;;
  esac
  cp "$built" "$bin/fluxfence"
fi
"$bin/fluxfence" --version >&2
if [ -n "${GITHUB_PATH:-}" ]; then
  echo "$bin" >> "$GITHUB_PATH"
fi
echo "$bin"
