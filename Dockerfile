# syntax=docker/dockerfile:1
# fluxfence-webhook: built with the workspace's release profile, run as nonroot on distroless.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds; the binary is
# copied out of the cached target directory because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fluxfence-webhook \
    && install -D -m 0755 target/release/fluxfence-webhook /out/fluxfence-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/fluxfence-webhook /usr/local/bin/fluxfence-webhook
# The chart mounts the certificate under /tls and the policy under /policy.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/fluxfence-webhook"]
