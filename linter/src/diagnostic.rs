//! What rules report, independent of where the object came from (a file or an admission
//! request) and of how it is shown.

use serde::{Deserialize, Serialize};

use crate::yaml::Span;

/// How a rule's finding is treated: `deny` fails the lint and the admission, `warn` is shown
/// (and sent as an admission warning) but passes, `off` silences the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Off,
    Warn,
    Deny,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Off => "off",
            Severity::Warn => "warn",
            Severity::Deny => "deny",
        }
    }
}

/// Whether a fix may be applied without a human looking at it (ruff's model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applicability {
    /// Keeps the meaning the author intended: applied by `fix`.
    Safe,
    /// Changes behaviour in a way the author must accept: applied with `--unsafe-fixes`.
    Unsafe,
}

impl Applicability {
    pub fn as_str(self) -> &'static str {
        match self {
            Applicability::Safe => "safe",
            Applicability::Unsafe => "unsafe",
        }
    }
}

/// One edit of a fix, on the object's JSON pointer; lowered to text edits for files and to
/// JSON Patch for admission responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum FixOp {
    /// Set the string at `pointer`, creating it (and missing parent mappings) when absent.
    Set { pointer: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub applicability: Applicability,
    pub description: String,
    pub ops: Vec<FixOp>,
}

/// A rule's verdict on one field of one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    /// JSON pointer to the offending field (`/spec/chart/spec/sourceRef/namespace`).
    pub pointer: String,
    /// Byte range of the field in the file; empty for objects not read from a file.
    #[serde(skip)]
    pub span: Span,
    pub message: String,
    /// One line: how to make the finding go away.
    pub help: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// A finding placed in a file, as the linter reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    #[serde(flatten)]
    pub finding: Finding,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// `Kind/namespace/name` of the object, when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Where the object's namespace came from, when a rule depended on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_origin: Option<String>,
    /// How the build came to the value: where it was written when that is not the object's
    /// own file (a patch, a kustomization, a replacement's source), and the Flux
    /// Kustomization whose build gives the object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
