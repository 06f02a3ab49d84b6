//! Links the `fluxfence` binary as a position-dependent executable on Linux with glibc.
//!
//! A position-independent executable has every pointer in its read-only data relocated by the
//! dynamic loader at each start: about 19,000 of them here, a millisecond of a pre-commit run
//! that lints one file (BENCHMARKS.md). Go, which kubectl, helm and flux are written in, links
//! Linux executables position-dependent by default too. The webhook stays
//! position-independent: a long-running server, where address randomisation is worth more
//! than a millisecond.

fn main() {
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    // glibc targets only: musl builds are static (and position-independent) by design.
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bin=fluxfence=-no-pie");
    }
}
