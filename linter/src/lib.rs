//! fluxfence: the Flux v2 multi-tenancy rule engine.
//!
//! Inputs (files, stdin, admission requests) become [`model::FluxObject`]s with an
//! [`model::EffectiveNamespace`]; [`rules`] judge them under a [`policy::Policy`];
//! [`output`] renders the resulting [`diagnostic::Diagnostic`]s.

pub mod build;
pub mod diagnostic;
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
pub mod split;
pub mod suppress;
pub mod walk;
pub mod yaml;

pub use diagnostic::{Diagnostic, Finding, Severity};
pub use input::Inventory;
pub use lint::{Report, lint};
pub use policy::Policy;
