//! Links the `fluxfence` binary as a position-dependent executable on Linux.
//!
//! A position-independent executable has every pointer in its read-only data relocated by the
//! dynamic loader at each start: about 19,000 of them here, a millisecond of a pre-commit run
//! that lints one file in under ten. Go-built Kubernetes CLIs (kubectl, helm, flux) ship
//! position-dependent for the same reason. The webhook stays position-independent: it is a
//! long-running server, where address randomisation is worth more than a millisecond.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=fluxfence=-no-pie");
    }
}
