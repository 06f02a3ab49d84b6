//! Renderers of a [`Report`]: they only format, never decide.

use std::path::{Component, Path, PathBuf};

use crate::lint::Report;

mod github;
mod json;
mod junit;
mod sarif;
mod text;

pub use text::plural;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Code frames for people (rustc style).
    Text,
    /// One JSON document: diagnostics, errors, unresolved namespaces, summary.
    Json,
    /// SARIF 2.1.0, for code-scanning services.
    Sarif,
    /// JUnit XML, for CI test reports.
    Junit,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Junit => "junit",
            Format::Github => "github",
        }
    }
}

/// How a report is rendered, beyond its format.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// List the objects whose namespace cannot be known offline (text).
    pub show_unresolved: bool,
    /// ANSI colours (text).
    pub color: bool,
    /// Counts per rule instead of a frame per finding (text).
    pub statistics: bool,
    /// The findings only, without the summary lines (text).
    pub quiet: bool,
    /// The repository root, absolute: SARIF and GitHub paths are relative to it, JSON and
    /// SARIF name it.
    pub root: Option<PathBuf>,
    /// The working directory relative paths of the report are spelled from.
    pub cwd: Option<PathBuf>,
}

impl Options {
    pub fn with_unresolved(show_unresolved: bool) -> Options {
        Options {
            show_unresolved,
            ..Options::default()
        }
    }

    /// `file` (as a report spells it) relative to the root, with forward slashes; `None`
    /// when there is no root or the file lies outside it.
    pub fn repository_relative(&self, file: &str) -> Option<String> {
        let root = self.root.as_deref()?;
        let path = Path::new(file);
        let absolute = match (&self.cwd, path.is_absolute()) {
            (Some(cwd), false) => cwd.join(path),
            _ => path.to_path_buf(),
        };
        let absolute = canonical(&absolute);
        let rel = absolute.strip_prefix(root).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Some(parts.join("/"))
    }
}

/// The path with symbolic links resolved where it exists; a path that does not (a
/// `--stdin-filename`, a file deleted since) keeps its name under its nearest existing
/// ancestor, with `.` and `..` worked out as text.
pub fn canonical(path: &Path) -> PathBuf {
    if let Ok(found) = path.canonicalize() {
        return found;
    }
    let mut lexical = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Some(name) = existing.file_name() {
            rest.push(name.to_owned());
        }
        existing = parent;
        if let Ok(found) = existing.canonicalize() {
            return rest.iter().rev().fold(found, |path, name| path.join(name));
        }
    }
    lexical
}

/// Writes the report to `out`; JSON is streamed, the other formats are rendered first.
pub fn write(
    report: &Report,
    format: Format,
    options: &Options,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => json::write(report, options.root.as_deref(), out),
        _ => out.write_all(render(report, format, options).as_bytes()),
    }
}

pub fn render(report: &Report, format: Format, options: &Options) -> String {
    match format {
        Format::Text => text::render(report, options),
        Format::Json => json::render(report, options.root.as_deref()),
        Format::Sarif => sarif::render(report, options),
        Format::Junit => junit::render(report),
        Format::Github => github::render(report, options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_root_from_any_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("apps/sub")).unwrap();
        std::fs::write(root.join("apps/a.yaml"), "").unwrap();
        let options = Options {
            root: Some(root.clone()),
            cwd: Some(root.join("apps/sub")),
            ..Options::default()
        };
        let rel = |file: &str| options.repository_relative(file);
        assert_eq!(rel("../a.yaml").as_deref(), Some("apps/a.yaml"));
        assert_eq!(rel("./../a.yaml").as_deref(), Some("apps/a.yaml"));
        let absolute = root.join("apps/a.yaml").display().to_string();
        assert_eq!(rel(&absolute).as_deref(), Some("apps/a.yaml"));
        // A name that exists nowhere (stdin's) is placed under its existing ancestor.
        assert_eq!(rel("new/b.yaml").as_deref(), Some("apps/sub/new/b.yaml"));
        assert_eq!(rel("/elsewhere/c.yaml"), None);
    }
}
