//! See `oracles::admission_review` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::admission_review::check(data));
