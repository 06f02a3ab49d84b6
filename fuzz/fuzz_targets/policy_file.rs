//! See `oracles::policy_file` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::policy_file::check(data));
