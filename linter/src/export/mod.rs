//! Exports of the policy into other enforcement points.

pub mod admission_policy;
pub mod cel;
mod yaml;
