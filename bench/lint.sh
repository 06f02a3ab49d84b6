#!/usr/bin/env bash
# Linter benchmarks (BENCHMARKS.md, "## Linter"). Every ratio printed is computed from one
# hyperfine run, so numbers taken on a busy machine stay comparable with each other.
#
#   bench/lint.sh                       all parts (takes a few minutes: the peers are slow)
#   PARTS="big onefile" bench/lint.sh   some of: peers big rss floor onefile
#
# Parts:
#   peers    ../shared/bench/peers.sh on the corpus: PyYAML+libyaml parse floor, yamllint,
#            kubernetes-validate, fluxfence lint --format json (target: floor/fluxfence >= 20)
#   big      the corpus joined into one file of >= BIG_MB MB; fluxfence vs the PyYAML
#            CSafeLoader floor on that file, and fluxfence with every rule off
#   rss      peak RSS of fluxfence on the big file (target < 200 MB)
#   floor    the corpus linted with the default policy vs `enforce: false` (tenancy rules off:
#            parse, namespace resolution, the remaining checks), an approximation of the
#            parser's floor (DESIGN 8: within 2x)
#   onefile  one file, as pre-commit runs it (target < 10 ms): outside any repository, inside
#            this repository (the seed, a v2 HelmRelease, a file without Flux objects), and
#            inside a copy of a corpus repository (context loading reads the whole repository)
#
# Environment: CORPUS (../shared/corpus), RUNS (runs of the long cases, default 5), BIG_MB (40),
# FLUXFENCE (a binary to use instead of building target/release/fluxfence), KEEP=1 keeps the
# temporary directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
corpus=$(cd "${CORPUS:-$root/../shared/corpus}" && pwd)
peers_sh=$root/../shared/bench/peers.sh
runs=${RUNS:-5}
big_mb=${BIG_MB:-40}
parts=${PARTS:-peers big rss floor onefile}
cache=${FLUXFENCE_BENCH_CACHE:-$HOME/.cache/fluxfence-bench}
venv=$cache/venv
py=$venv/bin/python

has() { case " $parts " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
say() { printf '\n== %s\n' "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
if [ ! -x "$py" ] || ! "$py" -c 'import yaml; yaml.CSafeLoader' 2>/dev/null; then
  # peers.sh creates the same virtualenv (with yamllint and kubernetes-validate as well).
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyyaml
fi

if [ -n "${FLUXFENCE:-}" ]; then
  ff=$(cd "$(dirname "$FLUXFENCE")" && pwd)/$(basename "$FLUXFENCE")
else
  cargo build --release -q -p fluxfence
  ff=$root/target/release/fluxfence
fi

tmp=$(mktemp -d /tmp/fluxfence-bench.XXXXXX)
if [ "${KEEP:-}" = 1 ]; then echo "keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
printf 'enforce: false\n' > "$tmp/rules-off.yaml"

# mean of command $2 divided by mean of command $3 in hyperfine's JSON export $1 (0-based)
ratio() {
  "$py" - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"{r[int(sys.argv[2])]['mean'] / r[int(sys.argv[3])]['mean']:.2f}")
PY
}
hf() { hyperfine --style basic "$@" 2>&1 | { grep -v -e "^ *$" -e "Ignoring non-zero exit code" || true; } >&2; }
declare -a summary=()
note() { summary+=("$*"); }

echo "fluxfence: $ff ($("$ff" --version))"
echo "machine: $(nproc) cores, $(uname -srm); load average at start: $(load)"
git -C "$root" log -1 --format='commit: %h %s' 2>/dev/null || true
if [ -n "$(git -C "$root" status --porcelain -- linter 2>/dev/null)" ]; then
  echo "note: linter/ has uncommitted changes; the binary is built from the working tree"
fi

if has peers; then
  say "corpus vs peers ($(load))"
  # peers.sh times yamllint and kubernetes-validate too; RUNS applies to every command.
  RUNS=$runs "$peers_sh" "$corpus" -- "$ff" lint --format json | tee "$tmp/peers.md"
  # peers.sh leaves hyperfine's markdown table; take the floor and fluxfence rows' means.
  r=$("$py" - "$tmp/peers.md" <<'PY'
import re, sys
mean = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
    if len(cells) > 3 and cells[1].startswith("`"):
        # FLUXFENCE may name a binary called anything: the command is known by its arguments.
        key = "floor" if "floor.py" in cells[1] else "fluxfence" if " lint " in cells[1] else None
        if key:
            mean[key] = float(cells[2].split()[0])
print(f"{mean['floor'] / mean['fluxfence']:.1f}")
PY
)
  note "corpus: PyYAML+libyaml floor / fluxfence lint = ${r}x (target >= 20x)"
fi

big=$tmp/big.yaml
if has big || has rss; then
  say "building the big file (>= $big_mb MB)"
  # Every corpus YAML file that PyYAML loads on its own (it refuses duplicate anchors, which
  # YAML 1.2 and kubectl accept, and tags it has no constructor for), joined with "\n---\n" (17 corpus
  # files lack a trailing newline: the leading "\n" closes them), a leading BOM dropped (a BOM
  # is only allowed at the start of a stream), files with a %-directive left out (a directive
  # needs its own "---" after it and ends the previous document first). The joined text is
  # checked to load as a whole, then repeated until it is big enough.
  "$py" - "$corpus" "$big" "$big_mb" <<'PY'
import math, os, sys, yaml
corpus, out, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = sorted(
    os.path.join(d, f)
    for d, _, fs in os.walk(corpus)
    for f in fs
    if f.endswith((".yaml", ".yml"))
)
kept, left_out = [], {}
for p in paths:
    try:
        text = open(p, "rb").read().decode("utf-8")
    except UnicodeDecodeError:
        left_out.setdefault("not UTF-8", []).append(p)
        continue
    text = text.removeprefix("\ufeff")
    if any(line.startswith("%") for line in text.splitlines()):
        left_out.setdefault("%-directive", []).append(p)
        continue
    try:
        for _ in yaml.load_all(text, Loader=yaml.CSafeLoader):
            pass
    except yaml.YAMLError as e:
        problem = (getattr(e, "problem", None) or str(e)).split(";")[0][:50]
        left_out.setdefault(f"PyYAML refuses it ({problem})", []).append(p)
        continue
    kept.append(text)
unit = "\n---\n".join(kept) + "\n"
docs = sum(1 for _ in yaml.load_all(unit, Loader=yaml.CSafeLoader))
size = len(unit.encode())
copies = math.ceil(mb * 1_000_000 / size)
with open(out, "w") as f:
    f.write("---\n".join([unit] * copies))
print(f"{len(kept)} of {len(paths)} files, {size} bytes, {docs} documents per copy; "
      f"{copies} copies: {os.path.getsize(out)} bytes")
for why, ps in left_out.items():
    print(f"left out, {why}: {len(ps)}: " + ", ".join(os.path.relpath(p, corpus) for p in ps[:5])
          + (" ..." if len(ps) > 5 else ""))
PY
  "$ff" lint --format json "$big" > "$tmp/big.json" || true
  "$py" -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print("fluxfence on it:", s); sys.exit(s["inputErrors"] != 0)' "$tmp/big.json"
  cat > "$tmp/floor-one.py" <<'PY'
import sys, yaml
with open(sys.argv[1], "rb") as f:
    print(sum(1 for _ in yaml.load_all(f, Loader=yaml.CSafeLoader)))
PY
fi

if has big; then
  say "big file: PyYAML floor vs fluxfence ($(load))"
  hf -N -i --warmup 1 --runs "$runs" --export-json "$tmp/big-hf.json" \
    -n "PyYAML CSafeLoader load_all (floor)" "$py $tmp/floor-one.py $big" \
    -n "fluxfence lint --format json" "$ff lint --format json $big" \
    -n "fluxfence lint --format json, enforce: false" "$ff lint --policy $tmp/rules-off.yaml --format json $big"
  note "big file: PyYAML floor / fluxfence lint = $(ratio "$tmp/big-hf.json" 0 1)x (target >= 20x)"
  note "big file: fluxfence lint / same with enforce: false = $(ratio "$tmp/big-hf.json" 1 2)x (target <= 2x)"
fi

if has rss; then
  say "peak RSS on the big file ($(load))"
  for policy in default rules-off; do
    args=(lint --format json)
    [ $policy = rules-off ] && args+=(--policy "$tmp/rules-off.yaml")
    /usr/bin/time -v -o "$tmp/time.txt" "$ff" "${args[@]}" "$big" > /dev/null || true
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tmp/time.txt")
    echo "$policy policy: max RSS $((kb / 1024)) MiB, wall $wall, file $(($(stat -c %s "$big") / 1048576)) MiB"
    [ $policy = default ] && note "big file: peak RSS $((kb / 1024)) MiB (target < 200 MB)"
  done
fi

if has floor; then
  say "corpus: default policy vs enforce: false ($(load))"
  hf -N -i --warmup 1 --runs $((runs * 2)) --export-json "$tmp/floor-hf.json" \
    -n "fluxfence lint --format json corpus" "$ff lint --format json $corpus" \
    -n "fluxfence lint --format json corpus, enforce: false" "$ff lint --policy $tmp/rules-off.yaml --format json $corpus"
  note "corpus: fluxfence lint / same with enforce: false = $(ratio "$tmp/floor-hf.json" 0 1)x (target <= 2x)"
fi

if has onefile; then
  say "one file ($(load))"
  mkdir -p "$tmp/alone"
  cp testdata/seed/before/nginx.yaml "$tmp/alone/nginx.yaml"
  # A corpus repository as a Git checkout: linting one of its files loads the rest as context.
  repo=$tmp/repo
  cp -r "$corpus/auricom__home-ops" "$repo"
  git -C "$repo" init -q
  one=$(cd "$repo" && grep -rl --include=helmrelease.yaml '^kind: HelmRelease' . | sort | awk 'NR == 1')
  one=${one#./}
  nfiles=$(cd "$repo" && find . -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | wc -l)
  echo "repository: auricom__home-ops ($nfiles manifests), file: $one"
  # In this repository, the three kinds of file a pre-commit hook hands over: Flux objects of
  # removed versions (FF001 has no served schema to compile), a current HelmRelease (FF001
  # compiles the v2 schema of the CRD vendored under charts/), and no Flux object at all
  # (no context is read).
  v2=testdata/repos/kustomize-namespace-overrides-metadata/apps/team-c/podinfo.yaml
  plain=testdata/rules/FF101/ok-not-flux-kinds.yaml
  hf -N -i --warmup 20 --runs 200 --export-json "$tmp/one-hf.json" \
    -n "lint nginx.yaml, outside any repository" "$ff lint $tmp/alone/nginx.yaml" \
    -n "lint testdata/seed/before/nginx.yaml (in this repository)" "$ff lint testdata/seed/before/nginx.yaml" \
    -n "lint a v2 HelmRelease (in this repository)" "$ff lint $v2" \
    -n "lint a file without Flux objects (in this repository)" "$ff lint $plain"
  (cd "$repo" && hf -N -i --warmup 5 --runs $((runs * 10)) --export-json "$tmp/repo-hf.json" \
    -n "lint $one (in a corpus repository)" "$ff lint $one" \
    -n "lint . (the whole corpus repository)" "$ff lint .")
  ms() { "$py" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.1f ms (median %.1f)" % (r["mean"]*1000, r["median"]*1000))' "$@"; }
  note "one file outside a repository: $(ms "$tmp/one-hf.json" 0) (target < 10 ms)"
  note "one file in this repository: $(ms "$tmp/one-hf.json" 1) (target < 10 ms)"
  note "  a v2 HelmRelease: $(ms "$tmp/one-hf.json" 2); a file without Flux objects: $(ms "$tmp/one-hf.json" 3)"
  note "one file in auricom__home-ops: $(ms "$tmp/repo-hf.json" 0); the whole repository: $(ms "$tmp/repo-hf.json" 1); ratio $(ratio "$tmp/repo-hf.json" 0 1)"
fi

say "summary (load average at end: $(load))"
printf '%s\n' "${summary[@]}"
