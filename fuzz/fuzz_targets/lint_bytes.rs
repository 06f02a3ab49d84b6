//! See `oracles::lint_bytes` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::lint_bytes::check(data));
