//! See `oracles::kustomize_build` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::kustomize_build::check(data));
