//! See `oracles::yaml_block_vs_parser` for what this target holds fluxfence to.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracles::yaml_block_vs_parser::check(data));
