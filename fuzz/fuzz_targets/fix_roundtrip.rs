//! See `oracles::fix_roundtrip` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::fix_roundtrip::check(data));
