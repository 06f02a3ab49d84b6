//! Reading the input: files, directories and stdin become an [`Inventory`] of resources,
//! kustomization files and suppressions, each tied to its file and byte range.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kustomize::{self, KustomizeFile};
use crate::model::FluxObject;
use crate::suppress::{self, Suppression};
use crate::yaml::{self, LineIndex, Node, Span};

/// Largest file read (bytes). Larger files are reported, not read: no Kubernetes manifest
/// comes near it, and it bounds memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

pub struct SourceFile {
    /// The path as the user gave or walked it (what diagnostics print).
    pub path: String,
    /// The path relative to the repository root (for Flux `spec.path` and kustomize references).
    pub rel: PathBuf,
    pub text: String,
    pub lines: LineIndex,
    pub suppressions: Vec<Suppression>,
    /// False for files loaded only as context (to resolve namespaces), not to be reported on.
    pub reported: bool,
}

/// A file's identity and text, without the parse.
pub struct Source {
    pub path: String,
    pub rel: PathBuf,
    pub text: String,
    pub reported: bool,
}

/// A Kubernetes object found in the input.
pub struct Resource {
    pub file: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub declared_namespace: Option<String>,
    /// Set for Flux kinds.
    pub flux: Option<FluxObject>,
    /// The document (or `List` item) the resource is, and where its first field starts:
    /// comments between the two are document-level suppressions.
    pub span: Span,
    pub header: Span,
}

/// A file that could not be read or parsed, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[derive(Default)]
pub struct Inventory {
    pub root: Option<PathBuf>,
    pub files: Vec<SourceFile>,
    pub resources: Vec<Resource>,
    pub kustomize_files: Vec<KustomizeFile>,
    pub errors: Vec<InputError>,
    /// CustomResourceDefinitions, from the input and from [`Inventory::load_crds`].
    pub crds: Vec<CrdDocument>,
}

/// An `apiextensions.k8s.io` CustomResourceDefinition document: FF001 checks Flux objects
/// against the schemas it declares.
pub struct CrdDocument {
    /// The file it was read from, as displayed.
    pub path: String,
    pub root: Node,
    /// Given with `--crds` rather than found in the input; such CRDs win over the input's.
    pub explicit: bool,
}

/// What one file yields, before it gets its index in the inventory.
struct ParsedFile {
    file: Option<SourceFile>,
    resources: Vec<Resource>,
    kustomize: Option<KustomizeFile>,
    error: Option<InputError>,
    crds: Vec<CrdDocument>,
}

impl Inventory {
    /// Loads files and directories. When they lie inside a Git repository, the rest of the
    /// repository is loaded as context (a file's namespace may come from a kustomization.yaml
    /// or a Flux Kustomization elsewhere) but only the given paths are reported on.
    pub fn load(paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, ContextFiles::Skim)
    }

    /// Like [`Inventory::load`], but context files are parsed whole: the fixer needs every
    /// resource near the objects it moves, not only what decides namespaces.
    pub fn load_for_fix(paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, ContextFiles::Full)
    }

    fn load_with_context(paths: &[PathBuf], context: ContextFiles) -> Inventory {
        let root = paths.first().map(|p| repository_root(p));
        let mut inventory = Inventory {
            root: root.clone(),
            ..Inventory::default()
        };
        let mut wanted: Vec<(PathBuf, bool)> = Vec::new();
        for path in paths {
            if !path.exists() {
                inventory.errors.push(InputError {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: "no such file or directory".into(),
                });
                continue;
            }
            walk(path, &mut |p| wanted.push((p, true)));
        }
        if let Some(root) = root.as_ref().filter(|r| r.join(".git").exists()) {
            let given: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
            let covers_root = given
                .iter()
                .any(|g| root.canonicalize().is_ok_and(|r| &r == g));
            let canonical_root = root.canonicalize().unwrap_or_else(|_| root.clone());
            if !covers_root {
                walk(root, &mut |p| {
                    // Walked paths are under `root`: rebase instead of a system call per file.
                    let canonical = p
                        .strip_prefix(root)
                        .map_or_else(|_| p.clone(), |rel| canonical_root.join(rel));
                    if !given.iter().any(|g| canonical.starts_with(g)) {
                        wanted.push((p, false));
                    }
                });
            }
        }
        let parsed = parse_in_parallel(&wanted, root.as_deref(), context);
        for item in parsed {
            inventory.add(item);
        }
        inventory
    }

    /// Loads one in-memory text (stdin, tests, admission reviews rendered as YAML).
    pub fn from_text(name: &str, text: String) -> Inventory {
        let mut inventory = Inventory::default();
        inventory.add(parse_text(name.to_owned(), PathBuf::from(name), text, true));
        inventory
    }

    /// Builds an inventory from texts in memory: the fixer re-lints its own output this way.
    pub fn from_sources(root: Option<PathBuf>, sources: Vec<Source>) -> Inventory {
        let mut inventory = Inventory {
            root,
            ..Inventory::default()
        };
        for source in sources {
            inventory.add(parse_text(
                source.path,
                source.rel,
                source.text,
                source.reported,
            ));
        }
        inventory
    }

    /// Files that kustomize applies as patches (`patches[].path`, `patchesStrategicMerge`),
    /// relative to the root. Their documents are partial objects and selectors, not objects.
    pub fn patch_files(&self) -> HashSet<PathBuf> {
        self.kustomize_files
            .iter()
            .flat_map(|k| {
                k.patches
                    .iter()
                    .filter_map(|p| kustomize::normalize(&k.dir, p))
            })
            .collect()
    }

    /// The texts of this inventory's files, to rebuild it after edits.
    pub fn into_sources(self) -> (Option<PathBuf>, Vec<Source>) {
        let sources = self
            .files
            .into_iter()
            .map(|f| Source {
                path: f.path,
                rel: f.rel,
                text: f.text,
                reported: f.reported,
            })
            .collect();
        (self.root, sources)
    }

    /// Adds a text as if it were a file at `rel` under the root (tests build repositories so).
    pub fn add_text(&mut self, rel: &str, text: String) {
        self.add(parse_text(rel.to_owned(), PathBuf::from(rel), text, true));
    }

    fn add(&mut self, parsed: ParsedFile) {
        // A context file that cannot be parsed only costs context; it is not the user's target.
        let reported = parsed.file.as_ref().is_none_or(|f| f.reported);
        if let Some(error) = parsed.error.filter(|_| reported) {
            self.errors.push(error);
        }
        let Some(file) = parsed.file else { return };
        let index = self.files.len();
        self.files.push(file);
        self.resources
            .extend(parsed.resources.into_iter().map(|mut r| {
                r.file = index;
                r
            }));
        if let Some(mut k) = parsed.kustomize {
            k.file = index;
            self.kustomize_files.push(k);
        }
        self.crds.extend(parsed.crds);
    }

    /// Reads the CustomResourceDefinitions under `dir` (recursively) for schema checks; the
    /// files are not linted. Unreadable or malformed files are input errors.
    pub fn load_crds(&mut self, dir: &Path) {
        if !dir.exists() {
            self.errors.push(InputError {
                file: dir.display().to_string(),
                line: 0,
                column: 0,
                message: "no such CRD file or directory".into(),
            });
            return;
        }
        let mut paths = Vec::new();
        walk(dir, &mut |p| paths.push((p, false)));
        for parsed in parse_in_parallel(&paths, None, ContextFiles::Full) {
            self.errors.extend(parsed.error);
            self.crds
                .extend(parsed.crds.into_iter().map(|crd| CrdDocument {
                    explicit: true,
                    ..crd
                }));
        }
    }
}

/// The nearest ancestor holding `.git`, else the directory itself (or a file's directory).
fn repository_root(path: &Path) -> PathBuf {
    let start = if path.is_dir() {
        path.to_path_buf()
    } else {
        // `file.yaml` has the parent `""`, which is the current directory.
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let absolute = start.canonicalize().unwrap_or_else(|_| start.clone());
    for dir in absolute.ancestors() {
        if dir.join(".git").exists() {
            // Keep the user's spelling when the given path already is the root.
            return if dir == absolute {
                start
            } else {
                dir.to_path_buf()
            };
        }
    }
    start
}

fn is_manifest(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "yaml" | "yml" | "json") || kustomize::is_kustomization_file(path)
}

/// Calls `found` for every manifest under `path` (or `path` itself when a file), in a stable
/// order, skipping hidden entries (`.git`) and what `.gitignore` excludes.
fn walk(path: &Path, found: &mut dyn FnMut(PathBuf)) {
    if path.is_file() {
        found(path.to_path_buf());
        return;
    }
    let walker = ignore::WalkBuilder::new(path)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| !is_helm_templates_dir(entry.path()))
        .build();
    for entry in walker.flatten() {
        if entry.file_type().is_some_and(|t| t.is_file()) && is_manifest(entry.path()) {
            found(entry.into_path());
        }
    }
}

/// Helm chart templates are Go templates, not manifests: skip a chart's `templates/` directory.
fn is_helm_templates_dir(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "templates")
        && path
            .parent()
            .is_some_and(|chart| chart.join("Chart.yaml").is_file())
}

/// How much of a context-only file to read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ContextFiles {
    /// Only files that can decide a namespace or declare a service account are parsed.
    Skim,
    Full,
}

fn parse_in_parallel(
    paths: &[(PathBuf, bool)],
    root: Option<&Path>,
    context: ContextFiles,
) -> Vec<ParsedFile> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len().max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<ParsedFile>> = (0..paths.len()).map(|_| None).collect();
    let results: Vec<Vec<(usize, ParsedFile)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, reported)) = paths.get(i) else {
                            break;
                        };
                        done.push((i, read_and_parse(path, root, *reported, context)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (i, parsed) in results.into_iter().flatten() {
        slots[i] = Some(parsed);
    }
    slots.into_iter().flatten().collect()
}

fn read_and_parse(
    path: &Path,
    root: Option<&Path>,
    reported: bool,
    context: ContextFiles,
) -> ParsedFile {
    let display = path.display().to_string();
    let rel = relative_to(path, root);
    let fail = |line, column, message: String| ParsedFile {
        file: None,
        resources: Vec::new(),
        kustomize: None,
        crds: Vec::new(),
        error: Some(InputError {
            file: display.clone(),
            line,
            column,
            message,
        }),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return fail(
                0,
                0,
                format!(
                    "file is {} bytes, over the {MAX_FILE_BYTES}-byte limit",
                    m.len()
                ),
            );
        }
        Err(e) => return fail(0, 0, format!("cannot read: {e}")),
        Ok(_) => {}
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return fail(0, 0, format!("cannot read: {e}")),
    };
    match decode(bytes) {
        Ok(text) => {
            // A context file that is no kustomization, Flux Kustomization, ServiceAccount or CRD
            // cannot change a verdict: skip its parse (pre-commit runs are one file + context).
            let irrelevant = !reported
                && context == ContextFiles::Skim
                && !kustomize::is_kustomization_file(&rel)
                && !text.contains("Kustomization")
                && !text.contains("ServiceAccount")
                && !text.contains("CustomResourceDefinition");
            let text = if irrelevant { String::new() } else { text };
            parse_text(display, rel, text, reported)
        }
        Err((line, column, message)) => fail(line, column, message),
    }
}

/// `path` relative to the repository root, whichever of the two is spelled absolute.
fn relative_to(path: &Path, root: Option<&Path>) -> PathBuf {
    let Some(root) = root else {
        return path.to_path_buf();
    };
    if let Ok(rel) = path.strip_prefix(root) {
        return rel.to_path_buf();
    }
    match (path.canonicalize(), root.canonicalize()) {
        (Ok(p), Ok(r)) => p
            .strip_prefix(&r)
            .map_or_else(|_| path.to_path_buf(), Path::to_path_buf),
        _ => path.to_path_buf(),
    }
}

/// UTF-8 text, or the position of the first invalid byte.
pub fn decode(bytes: Vec<u8>) -> Result<String, (usize, usize, String)> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let index = LineIndex::new(&prefix);
        let (line, column) = index.position(&prefix, valid);
        (
            line,
            column,
            "invalid UTF-8; manifests must be UTF-8 text".to_owned(),
        )
    })
}

fn parse_text(display: String, rel: PathBuf, text: String, reported: bool) -> ParsedFile {
    let is_kustomization = kustomize::is_kustomization_file(&rel);
    let lines = LineIndex::new(&text);
    let mut resources = Vec::new();
    let mut kustomize = None;
    let mut crds = Vec::new();
    let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let loaded = yaml::load_documents(&text, |doc| {
        if is_kustomization {
            if kustomize.is_none() {
                kustomize = Some(KustomizeFile::from_node(0, dir.clone(), &doc.root));
            }
            return;
        }
        collect_resources(doc.root, doc.span.start, &mut resources, &mut crds);
    });
    let error = loaded.err().map(|e| {
        let (line, column) = lines.position(&text, e.offset);
        InputError {
            file: display.clone(),
            line,
            column,
            message: e.message,
        }
    });
    let suppressions = suppress::parse(&text, &lines);
    let crds = crds
        .into_iter()
        .map(|root| CrdDocument {
            path: display.clone(),
            root,
            explicit: false,
        })
        .collect();
    ParsedFile {
        file: Some(SourceFile {
            path: display,
            rel,
            text,
            lines,
            suppressions,
            reported,
        }),
        crds,
        resources,
        kustomize,
        error,
    }
}

/// A document is one resource, or a `List` of them; anything without `kind` is not a resource.
fn collect_resources(root: Node, doc_start: usize, out: &mut Vec<Resource>, crds: &mut Vec<Node>) {
    let kind = root.get("kind").and_then(Node::as_str).unwrap_or("");
    if kind == "List" || kind.ends_with("List") && root.get("items").is_some() {
        if let Some(yaml::Value::Map(entries)) = Some(root.value) {
            for (key, items) in entries {
                if key.as_scalar() != Some("items") {
                    continue;
                }
                if let yaml::Value::Seq(items) = items.value {
                    for item in items {
                        let start = item.span.start;
                        collect_resources(item, start, out, crds);
                    }
                }
            }
        }
        return;
    }
    let Some(api_version) = root
        .get("apiVersion")
        .and_then(Node::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    if kind.is_empty() {
        return;
    }
    let (name, declared_namespace) = crate::model::name_and_namespace(&root);
    let span = Span {
        start: doc_start,
        end: root.span.end,
    };
    let header = Span {
        start: doc_start,
        end: root.span.start,
    };
    let kind = kind.to_owned();
    let flux =
        if kind == "CustomResourceDefinition" && api_version.starts_with("apiextensions.k8s.io/") {
            crds.push(root);
            None
        } else {
            FluxObject::from_node(root)
        };
    out.push(Resource {
        file: 0,
        api_version,
        kind,
        name,
        declared_namespace,
        flux,
        span,
        header,
    });
}
