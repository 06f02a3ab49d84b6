//! fluxfence: the Flux v2 multi-tenancy rule engine.
//!
//! Inputs (files, stdin, admission requests) become [`model::FluxObject`]s with an
//! [`model::EffectiveNamespace`]; [`rules`] judge them under a [`policy::Policy`];
//! [`output`] renders the resulting [`diagnostic::Diagnostic`]s.

pub mod audit;
pub mod build;
pub mod diagnostic;
pub mod export;
pub mod fix;
pub mod input;
pub mod kinds;
pub mod kustomize;
pub mod lint;
pub mod model;
pub mod output;
pub mod parallel;
pub mod policy;
pub mod remedy;
pub mod rules;
pub mod schema;
pub mod shared;
pub mod split;
pub mod suppress;
pub mod walk;
pub mod yaml;

/// Says on the terminal that the running test skipped (part of) its work and why: written past
/// the test harness's capture, so that `cargo test` shows what a machine could not check.
#[cfg(test)]
pub(crate) fn test_skipped(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // One write, so that the notes of tests running at once do not interleave.
    let line = format!("{test}: skipped: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub use diagnostic::{Diagnostic, Finding, Severity};
pub use input::Inventory;
pub use lint::{Report, lint};
pub use policy::Policy;
