//! SARIF 2.1.0 as plain serde structs.

use serde::Serialize;

use crate::diagnostic::Severity;
use crate::lint::Report;
use crate::rules;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

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
    help: Help<'a>,
    help_uri: String,
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
struct ArtifactLocation {
    uri: String,
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

/// Repository-relative URIs with forward slashes, as code-scanning services expect.
fn uri(path: &str) -> String {
    path.trim_start_matches("./").replace('\\', "/")
}

pub fn render(report: &Report) -> String {
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
                help: Help {
                    text: meta.doc,
                    markdown: meta.doc,
                },
                help_uri: meta.doc_url(),
                default_configuration: Configuration {
                    level: level(meta.default_severity),
                },
            }
        })
        .collect();
    let results = report
        .diagnostics
        .iter()
        .map(|d| SarifResult {
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
                &d.file,
                d.line,
                d.column,
                d.end_line,
                d.end_column,
            )],
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
                &e.file,
                e.line.max(1),
                e.column.max(1),
                e.line.max(1),
                e.column.max(1),
            )],
        })
        .collect::<Vec<_>>();
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
    file: &str,
    start_line: usize,
    start_column: usize,
    end_line: usize,
    end_column: usize,
) -> Location {
    Location {
        physical_location: PhysicalLocation {
            artifact_location: ArtifactLocation { uri: uri(file) },
            region: Region {
                start_line,
                start_column,
                end_line,
                end_column,
            },
        },
    }
}
