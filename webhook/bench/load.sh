#!/usr/bin/env bash
# Load test of fluxfence-webhook: TLS on loopback, keep-alive connections. Compares /validate
# and /mutate with the allow-everything route /bench/allow of the same server (same TLS, HTTP
# and AdmissionReview parsing, no judgement), in one run:
#   - saturation (wrk, closed loop): throughput, and p50/p99 at that load;
#   - fixed rate (wrk with a pause between requests, about RATE requests/s): p50/p99 latency at a load the server carries,
#     which is the fair comparison of latencies (at saturation latency only mirrors throughput);
#   - the server's peak RSS (VmHWM from /proc) over the whole run.
#
#   webhook/bench/load.sh [SECONDS_PER_CASE=20] [CONNECTIONS=32] [RATE=2000]
#
# Needs wrk (installed with apt-get when missing), openssl, curl, python3. Builds the
# release binary with the `bench` feature. Every review is logged (JSON, to /dev/null) as in
# production; RUST_LOG=warn turns that off.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
connections=${2:-32}
rate=${3:-2000}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p fluxfence-webhook --features bench
bin=${CARGO_TARGET_DIR:-target}/release/fluxfence-webhook

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=${RUST_LOG:-info} "$bin" --listen "127.0.0.1:$port" --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" \
  --namespace fluxfence-system >/dev/null 2>"$work/stderr" &
server=$!
for _ in $(seq 50); do
  curl -skf "https://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done

fixtures=testdata/admission
saturate() { # path body label
  BODY_FILE=$2 wrk -t1 -c"$connections" -d1s -s webhook/bench/post.lua "https://127.0.0.1:$port$1" >/dev/null
  BODY_FILE=$2 wrk -t1 -c"$connections" -d"${seconds}s" -s webhook/bench/post.lua \
    "https://127.0.0.1:$port$1" | sed -n "s/^RESULT /saturation $3 /p"
}
paced() { # path body label: 20 connections, each pausing so the total is about RATE/s
  local connections=20
  BODY_FILE=$2 DELAY_MS=$((connections * 1000 / rate)) wrk -t1 -c$connections -d"${seconds}s" \
    -s webhook/bench/post.lua "https://127.0.0.1:$port$1" | sed -n "s/^RESULT /paced $3 /p"
}

echo "# $(nproc) cores, $connections connections (saturation), $rate req/s (paced), ${seconds}s per case, $(date -u +%F)"
saturate /bench/allow "$fixtures/helmrelease-cross-namespace.json" "allow-all"
saturate /validate "$fixtures/helmrelease-cross-namespace.json" "validate(deny)"
saturate /validate "$fixtures/helmrelease-cluster-config.json" "validate(warn)"
saturate /validate "$fixtures/helmrelease-reconcile-annotation.json" "validate(ratchet)"
saturate /mutate "$fixtures/kustomization-cluster-config.json" "mutate(patch)"
paced /bench/allow "$fixtures/helmrelease-cross-namespace.json" "allow-all"
paced /validate "$fixtures/helmrelease-cross-namespace.json" "validate(deny)"
paced /validate "$fixtures/helmrelease-reconcile-annotation.json" "validate(ratchet)"
paced /mutate "$fixtures/kustomization-cluster-config.json" "mutate(patch)"
echo "peak_rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")"
