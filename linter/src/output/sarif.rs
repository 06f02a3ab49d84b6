//! SARIF 2.1.0 as plain serde structs.
//!
//! Paths are relative to the repository root, named `%SRCROOT%` in `originalUriBaseIds`: code
//! scanning maps them onto the repository whatever directory the linter ran in.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};
use crate::lint::Report;
use crate::output::Options;
use crate::rules;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const SRCROOT: &str = "%SRCROOT%";
/// The key of the fingerprint in `partialFingerprints`; a change to what it hashes bumps it.
const FINGERPRINT: &str = "fluxfence/v1";

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'a str,
    version: &'a str,
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    original_uri_base_ids: BTreeMap<&'static str, ArtifactLocation>,
    results: Vec<SarifResult>,
    invocations: Vec<Invocation>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    name: &'a str,
    version: &'a str,
    information_uri: &'a str,
    rules: Vec<ReportingDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportingDescriptor<'a> {
    id: &'a str,
    name: &'a str,
    short_description: Text,
    full_description: Text,
    help_uri: String,
    help: Help<'a>,
    default_configuration: Configuration,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Help<'a> {
    text: &'a str,
    markdown: &'a str,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
    partial_fingerprints: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    tool_execution_notifications: Vec<Notification>,
}

#[derive(Serialize)]
struct Notification {
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Deny => "error",
        Severity::Warn => "warning",
        Severity::Off => "none",
    }
}

/// Where a file is, for code scanning: relative to `%SRCROOT%` when it lies under the root
/// (almost always), else an absolute `file:` URI. Computed once per file.
struct Artifacts<'a> {
    options: &'a Options,
    known: HashMap<String, (String, Option<&'static str>)>,
}

impl<'a> Artifacts<'a> {
    fn new(options: &'a Options) -> Artifacts<'a> {
        Artifacts {
            options,
            known: HashMap::new(),
        }
    }

    fn location(&mut self, file: &str) -> ArtifactLocation {
        let options = self.options;
        let (uri, uri_base_id) = self
            .known
            .entry(file.to_owned())
            .or_insert_with(|| match options.repository_relative(file) {
                Some(rel) => (encode(&rel), Some(SRCROOT)),
                None => (file_uri(file, options), None),
            })
            .clone();
        ArtifactLocation { uri, uri_base_id }
    }
}

/// A file outside the root as an absolute `file:` URI; a name that is no path (`<stdin>`)
/// stays as it is, a relative reference.
fn file_uri(file: &str, options: &Options) -> String {
    let path = Path::new(file);
    if !path.is_absolute() && options.cwd.is_none() || file.starts_with('<') {
        return encode(&file.replace('\\', "/"));
    }
    let absolute = match &options.cwd {
        Some(cwd) if !path.is_absolute() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    directory_uri(&crate::output::canonical(&absolute))
        .trim_end_matches('/')
        .to_owned()
}

/// `file:///…/` for a directory (the trailing slash makes it a base URI).
fn directory_uri(dir: &Path) -> String {
    let text = dir.display().to_string().replace('\\', "/");
    let text = text.trim_end_matches('/');
    // `/work/repo` is `file:///work/repo/`, `C:/repo` is `file:///C:/repo/`, `/` is `file:///`.
    let slash = if text.starts_with('/') || text.is_empty() {
        ""
    } else {
        "/"
    };
    format!("file://{slash}{}/", encode(text))
}

/// Percent-encodes what may not stand in a URI path (RFC 3986 `pchar` and `/`).
fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A fingerprint that survives lines added above a finding: the rule, the file, the object
/// and the field, hashed (FNV-1a, 64 bits: stable across builds and platforms).
fn fingerprint(d: &Diagnostic, uri: &str) -> String {
    let object = d.object.as_deref().unwrap_or("");
    let parts = [d.finding.code, uri, object, &d.finding.pointer];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

pub fn render(report: &Report, options: &Options) -> String {
    let descriptors = rules::ALL
        .iter()
        .map(|rule| {
            let meta = rule.meta();
            ReportingDescriptor {
                id: meta.code,
                name: meta.name,
                short_description: Text {
                    text: meta.summary.to_owned(),
                },
                full_description: Text {
                    text: meta.summary.to_owned(),
                },
                help_uri: meta.doc_url(),
                help: Help {
                    text: meta.doc,
                    markdown: meta.doc,
                },
                default_configuration: Configuration {
                    level: level(meta.default_severity),
                },
            }
        })
        .collect();
    let mut artifacts = Artifacts::new(options);
    let results = report
        .diagnostics
        .iter()
        .map(|d| {
            let artifact = artifacts.location(&d.file);
            let fingerprint = fingerprint(d, &artifact.uri);
            SarifResult {
                rule_id: d.finding.code.to_owned(),
                rule_index: rules::ALL
                    .iter()
                    .position(|r| r.meta().code == d.finding.code)
                    .unwrap_or(0),
                level: level(d.finding.severity),
                message: Text {
                    text: format!("{}\nhelp: {}", d.finding.message, d.finding.help),
                },
                locations: vec![location(
                    artifact,
                    d.line,
                    d.column,
                    d.end_line,
                    d.end_column,
                )],
                partial_fingerprints: BTreeMap::from([(FINGERPRINT, fingerprint)]),
            }
        })
        .collect();
    let notifications = report
        .errors()
        .iter()
        .map(|e| Notification {
            level: "error",
            message: Text {
                text: e.message.clone(),
            },
            locations: vec![location(
                artifacts.location(&e.file),
                e.line.max(1),
                e.column.max(1),
                e.line.max(1),
                e.column.max(1),
            )],
        })
        .collect::<Vec<_>>();
    let original_uri_base_ids = options
        .root
        .iter()
        .map(|root| {
            let base = ArtifactLocation {
                uri: directory_uri(root),
                uri_base_id: None,
            };
            (SRCROOT, base)
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "fluxfence",
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri: "https://github.com/fluxfence/fluxfence",
                    rules: descriptors,
                },
            },
            original_uri_base_ids,
            results,
            invocations: vec![Invocation {
                execution_successful: notifications.is_empty(),
                tool_execution_notifications: notifications,
            }],
        }],
    };
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

fn location(
    artifact_location: ArtifactLocation,
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
) -> Location {
    Location {
        physical_location: PhysicalLocation {
            artifact_location,
            region: Region {
                start_line,
                start_column,
                end_line,
                end_column,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_percent_encoded_and_directories_end_in_a_slash() {
        assert_eq!(encode("apps/a b#1.yaml"), "apps/a%20b%231.yaml");
        assert_eq!(encode("ünï.yaml"), "%C3%BCn%C3%AF.yaml");
        assert_eq!(directory_uri(Path::new("/work/repo")), "file:///work/repo/");
        assert_eq!(directory_uri(Path::new("/")), "file:///");
    }
}
