#!/usr/bin/env bash
# Runs one fuzz target (or all) for a while, at the lowest CPU priority, one worker each.
#
#   fuzz/run.sh TARGET [SECONDS [RUNS]]   one target, until SECONDS or RUNS executions
#   fuzz/run.sh all SECONDS               every target in turn, SECONDS each
#   FUZZ_SEED=N fuzz/run.sh …              libFuzzer's random seed fixed (CI's bursts)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus starts
# from testdata/fuzz/TARGET (kept inputs), the fixtures and ../shared/corpus where present,
# and grows in fuzz/corpus/TARGET (not committed). A crash is written to fuzz/artifacts/TARGET/
# and ends the run with status 1: fix it, and keep the input in testdata/fuzz/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
repo=..
# The corpus of real repositories, beside the checkout unless FLUXFENCE_SHARED says where.
shared=${FLUXFENCE_SHARED:-$repo/../shared}
targets=(yaml_block_vs_parser lint_bytes fix_roundtrip admission_review policy_file kustomize_build)

# Copies the files found under $2… (YAML and JSON, at most 16 KiB) into $1, each with the
# bytes $prefix in front (the targets that take a first byte as a choice).
seed_from() {
  local into=$1 prefix=$2
  shift 2
  local dir file n=0
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' file; do
      n=$((n + 1))
      { printf "$prefix"; cat "$file"; } > "$into/seed-$n-$(basename "$file")"
    done < <(find "$dir" -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) \
      -size -16k -not -path '*/fuzz/*' -print0 | sort -z)
  done
}

seed() {
  local target=$1 corpus=corpus/$1
  [ -d "$corpus" ] && return
  mkdir -p "$corpus"
  cp "$repo/testdata/fuzz/$target"/* "$corpus/"
  local manifests=("$repo/testdata" "$shared/corpus")
  case $target in
    yaml_block_vs_parser) seed_from "$corpus" '' "${manifests[@]}" "$repo/charts" ;;
    lint_bytes) seed_from "$corpus" '\002' "${manifests[@]}" ;;
    fix_roundtrip) seed_from "$corpus" '\000' "$repo/testdata" ;;
    admission_review) seed_from "$corpus" '' "$repo/testdata/admission" ;;
    policy_file) seed_from "$corpus" '' "$repo/policies" ;;
    kustomize_build) ;; # its inputs are choices, not files
  esac
}

max_len() {
  case $1 in
    admission_review) echo 8192 ;;
    kustomize_build) echo 256 ;;
    *) echo 16384 ;;
  esac
}

run() {
  local target=$1 seconds=$2 runs=${3:--1}
  seed "$target"
  mkdir -p "artifacts/$target"
  # One process (libFuzzer's default: no -jobs or -fork), so it takes one core at most, and
  # only what others leave idle. No sanitizer: the code is free of `unsafe`, so
  # AddressSanitizer would only slow it down; debug assertions on, so that arithmetic overflow
  # panics. Each input: 10 s at most (wall-clock: at the lowest priority on a busy machine a
  # run of 1 ms once waited a second for a core), and 2 GiB of memory for the process.
  nice -n 19 cargo +nightly fuzz run --sanitizer none --debug-assertions "$target" \
    "corpus/$target" -- \
    -max_total_time="$seconds" -runs="$runs" \
    -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" ${FUZZ_SEED:+-seed="$FUZZ_SEED"}
}

case ${1:-} in
  all)
    for target in "${targets[@]}"; do run "$target" "${2:?seconds}"; done ;;
  '' | -h | --help)
    sed -n '2,10p' "$0"; exit 2 ;;
  *)
    run "$1" "${2:-60}" "${3:--1}" ;;
esac
