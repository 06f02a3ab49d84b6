//! Reading the input: files, directories and stdin become an [`Inventory`] of resources,
//! kustomization files and suppressions, each tied to its file and byte range.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::kinds::FluxKind;
use crate::kustomize::{self, KustomizeFile, PatchFiles};
use crate::model::FluxObject;
use crate::parallel;
use crate::split::{self, Sniff};
use crate::suppress::{self, Suppression};
use crate::walk;
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
#[derive(Clone)]
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
    /// The document's tree, for every other kind but CRDs (whose trees the schema check
    /// keeps): builds patch, select and copy from them.
    pub tree: Option<Node>,
    /// The document (or `List` item) the resource is, and where its first field starts:
    /// comments between the two are document-level suppressions.
    pub span: Span,
    pub header: Span,
}

impl Resource {
    /// The document's tree (a Flux object's without its Helm values).
    pub fn root(&self) -> Option<&Node> {
        self.flux.as_ref().map(|f| &f.root).or(self.tree.as_ref())
    }

    /// The Flux Kustomization this resource is, if it is one.
    pub fn flux_kustomization(&self) -> Option<&FluxObject> {
        self.flux
            .as_ref()
            .filter(|object| object.kind == FluxKind::Kustomization)
    }
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
    /// `file:line:column: message`, or `file: message` for what concerns the whole file (one
    /// that cannot be read, a directory that cannot be listed): line 0.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
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
    /// Loaded for a lint verdict: documents no rule reads were skipped (see [`Depth`]).
    skipped_documents: bool,
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

/// A file read and indexed, with the documents the parser is to read.
struct Prepared {
    file: SourceFile,
    is_kustomization: bool,
    /// Byte ranges of its documents.
    documents: Vec<Range<usize>>,
    /// Which of them to parse, and how much of each.
    depth: Depth,
    /// The documents parsed already, on the thread that read the file (see [`read_path`]).
    parsed: Option<Parsed>,
}

/// What parsing some documents of one file yields.
#[derive(Default)]
struct Parsed {
    resources: Vec<Resource>,
    kustomize: Option<KustomizeFile>,
    errors: Vec<InputError>,
    crds: Vec<CrdDocument>,
    /// CRD documents of a context file, parsed only if they define a judged kind.
    deferred_crds: Vec<Range<usize>>,
}

/// A file read (boxed: the walk's lists hold one per file, and are joined, sorted and handed
/// on, each step moving every entry; a `Prepared` is hundreds of bytes), or why it could not
/// be.
type ReadFile = Result<Box<Prepared>, InputError>;

impl Inventory {
    /// Loads files and directories. When they lie inside a Git repository, the rest of the
    /// repository is loaded as context (a file's namespace may come from a kustomization.yaml
    /// or a Flux Kustomization elsewhere) but only the given paths are reported on.
    pub fn load(paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, None, Depth::Verdicts)
    }

    /// Like [`Inventory::load`], but context files are parsed whole: the fixer needs every
    /// resource near the objects it moves, not only what decides namespaces.
    pub fn load_for_fix(paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, None, Depth::Full)
    }

    /// Like [`Inventory::load`], with the repository root given (`--root`) instead of taken
    /// from the nearest `.git`: paths are relative to it, its `.gitignore` rules and policy
    /// apply, and the rest of it is read as context even where it holds no `.git`.
    pub fn load_in_root(root: &Path, paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, Some(root), Depth::Verdicts)
    }

    /// [`Inventory::load_for_fix`] with the repository root given, as for
    /// [`Inventory::load_in_root`].
    pub fn load_for_fix_in_root(root: &Path, paths: &[PathBuf]) -> Inventory {
        Inventory::load_with_context(paths, Some(root), Depth::Full)
    }

    fn load_with_context(
        paths: &[PathBuf],
        explicit_root: Option<&Path>,
        depth: Depth,
    ) -> Inventory {
        let root = explicit_root
            .map(Path::to_path_buf)
            .or_else(|| paths.first().map(|p| repository_root(p)));
        let mut inventory = Inventory {
            root: root.clone(),
            skipped_documents: depth == Depth::Verdicts,
            ..Inventory::default()
        };
        let mut read: Vec<ReadFile> = Vec::new();
        // Reported files parse every CRD they hold: no kinds to choose by.
        let mut judged = HashSet::new();
        for path in paths {
            if path.exists() {
                let no_skip = |_: &Path| false;
                read_path(
                    path,
                    root.as_deref(),
                    true,
                    depth,
                    &no_skip,
                    &judged,
                    &mut read,
                );
            } else {
                inventory.errors.push(InputError {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: "no such file or directory".into(),
                });
            }
        }
        // Any file of the repository may shape a build that gives the given files' objects,
        // or be shaped by a given file (a patch, a kustomization, a Flux Kustomization): the
        // rest of the repository is read whenever the given paths lie inside one.
        if let Some(root) = root
            .as_ref()
            .filter(|r| explicit_root.is_some() || r.join(".git").exists())
        {
            let given: Vec<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
            let canonical_root = root.canonicalize().ok();
            let covers_root = given.iter().any(|g| canonical_root.as_ref() == Some(g));
            if !covers_root {
                // The walk sees canonical paths. A given file or directory was read above, as
                // reported: it is left out here, and not entered.
                let is_given = |p: &Path| given.iter().any(|g| g == p);
                judged = judged_kinds(&read);
                read_path(
                    root,
                    Some(root),
                    false,
                    depth,
                    &is_given,
                    &judged,
                    &mut read,
                );
            }
        }
        let (resources, loaded) = load_files(read, &judged);
        // Sized once: the lists hold large entries, and growing one copies all of it.
        inventory.files.reserve(loaded.len());
        inventory.resources.reserve(resources);
        for (file, parsed) in loaded {
            inventory.add(file, parsed);
        }
        inventory
    }

    /// Loads one in-memory text (stdin, tests, admission reviews rendered as YAML).
    pub fn from_text(name: &str, text: String) -> Inventory {
        let mut inventory = Inventory::default();
        inventory.add_parsed(name.to_owned(), PathBuf::from(name), text, true);
        inventory
    }

    /// Builds an inventory from texts in memory: the fixer re-lints its own output this way.
    pub fn from_sources(root: Option<PathBuf>, sources: Vec<Source>) -> Inventory {
        let mut inventory = Inventory {
            root,
            ..Inventory::default()
        };
        for source in sources {
            inventory.add_parsed(source.path, source.rel, source.text, source.reported);
        }
        inventory
    }

    /// Whether every document of every file was parsed, as the fixer needs: false for
    /// [`Inventory::load`], which skips the documents no lint verdict depends on.
    pub fn is_complete(&self) -> bool {
        !self.skipped_documents
    }

    /// Files that kustomize applies as patches (`patches[].path`, `patchesStrategicMerge`),
    /// relative to the root. Their documents are partial objects and selectors, not objects.
    pub fn patch_files(&self) -> PatchFiles {
        PatchFiles::of(&self.kustomize_files)
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
        self.add_parsed(rel.to_owned(), PathBuf::from(rel), text, true);
    }

    /// Parses a text in memory, every document of it, and adds it.
    fn add_parsed(&mut self, display: String, rel: PathBuf, text: String, reported: bool) {
        let prepared = prepare(display, rel, text, reported, Depth::Full);
        let parsed = parse_documents(&prepared, &prepared.documents, None);
        self.add(Some(prepared.file), parsed);
    }

    fn add(&mut self, file: Option<SourceFile>, parsed: Parsed) {
        // A context file that cannot be parsed only costs context; it is not the user's target.
        if file.as_ref().is_none_or(|f| f.reported) {
            self.errors.extend(parsed.errors);
        }
        let Some(file) = file else { return };
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
        let mut read = Vec::new();
        // Read whole (`Depth::Full`): every CRD is parsed, there are no kinds to choose by.
        let all_kinds = HashSet::new();
        read_path(
            dir,
            None,
            false,
            Depth::Full,
            &|_| false,
            &all_kinds,
            &mut read,
        );
        for (_, parsed) in load_files(read, &all_kinds).1 {
            self.errors.extend(parsed.errors);
            self.crds
                .extend(parsed.crds.into_iter().map(|crd| CrdDocument {
                    explicit: true,
                    ..crd
                }));
        }
    }
}

/// The nearest ancestor holding `.git`, else the directory itself (or a file's directory).
pub fn repository_root(path: &Path) -> PathBuf {
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

/// Reads `path`, a file or the manifests under a directory (see [`walk::manifests`]), into
/// `read`. A named file is read whatever it is: a pipe (`<(…)`, /dev/stdin) is input too.
///
/// A walked file that is one batch of work (see [`BATCH_BYTES`]) is parsed right after it is
/// read, on the walk's thread, while its text is still in the core's cache; and the walk's
/// threads end together, where a parse of its own would start (and end) them again.
/// `crds_now` as for [`parse_documents`].
fn read_path(
    path: &Path,
    root: Option<&Path>,
    reported: bool,
    depth: Depth,
    skip: &(dyn Fn(&Path) -> bool + Sync),
    crds_now: &HashSet<String>,
    read: &mut Vec<ReadFile>,
) {
    if !path.is_dir() {
        let bytes = File::open(path).and_then(|file| read_limited(file, &[]));
        read.push(read_file(path, bytes, root, reported, depth));
        return;
    }
    let walked = walk::manifests(path, root, skip, &|file, opened| {
        // The walk hands over regular files only (it follows no links).
        let mut prepared = read_file(file, opened.and_then(read_regular), root, reported, depth)?;
        if prepared.file.text.len() <= BATCH_BYTES {
            let documents = &prepared.documents;
            prepared.parsed = Some(parse_documents(&prepared, documents, Some(crds_now)));
        }
        Ok(prepared)
    });
    read.extend(walked.unlisted.into_iter().map(|(dir, error)| {
        Err(InputError {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot list directory: {error}"),
        })
    }));
    read.extend(walked.files.into_iter().map(|(_, prepared)| prepared));
}

/// How much of the input the parser reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// What lint verdicts need: every document, as builds read them, but HelmRelease values
    /// (free-form, read by no rule: most of a repository's bytes) and the descriptions of
    /// context files' CRDs (two thirds of a CRD; the schema check reads none).
    Verdicts,
    /// Every document of every file: the fixer moves objects and must see their neighbours.
    Full,
}

/// Documents parsed in one piece of work: large files are spread over every core this way,
/// while the hand-out stays negligible next to the parse.
const BATCH_BYTES: usize = 64 * 1024;

/// Lint input smaller than this is parsed on the calling thread. Lint parses a few percent of a
/// repository's bytes (Flux objects, kustomization files), so below a megabyte the parse is
/// about as long as starting a second thread and giving it its own allocator pages: a
/// pre-commit run in this repository (600 KB of manifests) was 4–5% faster on one core, a
/// whole corpus repository of that size no slower.
const PARSE_ON_ONE_CORE_BELOW: usize = 1 << 20;

/// Parses files read and indexed (or the errors reading them), on every core when there is
/// enough of them (see [`PARSE_ON_ONE_CORE_BELOW`]). Results come in the order given; a file
/// that could not be read has no `SourceFile`. They are handed out one by one, not gathered
/// into one more list: each is a few hundred bytes to move. Also gives the number of resources
/// found, to size the list they go to.
fn load_files(
    mut read: Vec<ReadFile>,
    crds_now: &HashSet<String>,
) -> (
    usize,
    impl ExactSizeIterator<Item = (Option<SourceFile>, Parsed)>,
) {
    let mut per_file: Vec<Option<Parsed>> = read
        .iter_mut()
        .map(|prepared| prepared.as_mut().ok().and_then(|p| p.parsed.take()))
        .collect();
    let mut batches: Vec<(usize, &[Range<usize>])> = Vec::new();
    let mut text_bytes = 0;
    let mut for_verdicts = true;
    for (index, prepared) in read.iter().enumerate() {
        if let (Ok(prepared), None) = (prepared, &per_file[index]) {
            batches.extend(batch(&prepared.documents).map(|docs| (index, docs)));
            text_bytes += prepared.file.text.len();
            for_verdicts &= prepared.depth == Depth::Verdicts;
        }
    }
    let parse = |(index, documents): &(usize, &[Range<usize>])| match &read[*index] {
        Ok(prepared) => parse_documents(prepared, documents, Some(crds_now)),
        Err(_) => Parsed::default(),
    };
    let parsed: Vec<Parsed> = if for_verdicts && text_bytes < PARSE_ON_ONE_CORE_BELOW {
        batches.iter().map(parse).collect()
    } else {
        parallel::map(&batches, parse)
    };
    for ((index, _), part) in batches.iter().zip(parsed) {
        per_file[*index].get_or_insert_default().extend(part);
    }
    let mut per_file: Vec<Parsed> = per_file
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    parse_deferred_crds(&read, &mut per_file);
    let resources = per_file.iter().map(|parsed| parsed.resources.len()).sum();
    let files = read
        .into_iter()
        .zip(per_file)
        .map(|(prepared, mut parsed)| match prepared {
            Ok(prepared) => (Some(prepared.file), parsed),
            Err(error) => {
                parsed.errors.push(error);
                (None, parsed)
            }
        });
    (resources, files)
}

/// The Flux kinds that the documents of reported files name on their `kind:` lines, known
/// before parsing: a context CRD of one of these kinds is parsed with everything else, not
/// after. (Kinds only the parser can find still get their CRDs, see [`parse_deferred_crds`].)
fn judged_kinds(read: &[ReadFile]) -> HashSet<String> {
    read.iter()
        .filter_map(|p| p.as_deref().ok())
        .filter(|p| p.file.reported)
        .flat_map(Prepared::document_texts)
        .filter_map(|document| match split::sniff_kind(document) {
            Sniff::Object { kind, api_version } => {
                sniffed_flux_kind(kind, api_version).map(|_| kind.to_owned())
            }
            _ => None,
        })
        .collect()
}

/// Parses the deferred CRDs of context files that define a kind of a reported Flux object: a
/// repository's vendored CRDs (`gotk-components.yaml` holds them all) are large, and a
/// pre-commit run judges one or two kinds.
fn parse_deferred_crds(read: &[ReadFile], per_file: &mut [Parsed]) {
    let needles: HashSet<String> = read
        .iter()
        .zip(per_file.iter())
        .filter(|(prepared, _)| prepared.as_ref().is_ok_and(|p| p.file.reported))
        .flat_map(|(_, parsed)| &parsed.resources)
        .filter(|r| r.flux.is_some())
        .map(|r| r.kind.clone())
        .collect();
    for (prepared, parsed) in read.iter().zip(per_file.iter_mut()) {
        let Ok(prepared) = prepared else { continue };
        let wanted: Vec<Range<usize>> = std::mem::take(&mut parsed.deferred_crds)
            .into_iter()
            .filter(|range| {
                let document = &prepared.file.text[range.clone()];
                needles
                    .iter()
                    .any(|kind| split::has_kind_line(document, kind))
            })
            .collect();
        if !wanted.is_empty() {
            parsed.extend(parse_documents(prepared, &wanted, None));
        }
    }
}

/// Runs of consecutive documents of about [`BATCH_BYTES`].
fn batch(documents: &[Range<usize>]) -> impl Iterator<Item = &[Range<usize>]> {
    let mut rest = documents;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let take = rest
            .iter()
            .position(|d| {
                bytes += d.len();
                bytes >= BATCH_BYTES
            })
            .map_or(rest.len(), |i| i + 1);
        let (head, tail) = rest.split_at(take);
        rest = tail;
        Some(head)
    })
}

/// What reading a file gave: its bytes, its length when over [`MAX_FILE_BYTES`], or the error.
type ReadResult = std::io::Result<Result<Vec<u8>, u64>>;

/// Takes a file's bytes (see [`ReadResult`]) and prepares them for parsing.
fn read_file(
    path: &Path,
    bytes: ReadResult,
    root: Option<&Path>,
    reported: bool,
    depth: Depth,
) -> ReadFile {
    // `display` formats through a lossy UTF-8 decoder; almost every path is UTF-8 already.
    let display = path
        .to_str()
        .map_or_else(|| path.display().to_string(), str::to_owned);
    let fail = |line, column, message: String| InputError {
        file: display.clone(),
        line,
        column,
        message,
    };
    let bytes = match bytes {
        Ok(Ok(b)) => b,
        Ok(Err(len)) => {
            return Err(fail(
                0,
                0,
                format!("file is {len} bytes, over the {MAX_FILE_BYTES}-byte limit"),
            ));
        }
        Err(e) => return Err(fail(0, 0, format!("cannot read: {e}"))),
    };
    let text = decode(bytes).map_err(|(line, column, message)| fail(line, column, message))?;
    let rel = relative_to(path, root);
    Ok(Box::new(prepare(display, rel, text, reported, depth)))
}

/// Reads the rest of a file whatever it is, `read` being what was read of it already: up to
/// the size it had when opened, taken from the open handle so that a file is looked up once,
/// or to its end (bounded) when it reports no size (a pipe, a `/proc` file).
fn read_limited(file: File, read: &[u8]) -> ReadResult {
    use std::io::Read as _;
    let metadata = file.metadata()?;
    let len = metadata.len();
    if len > MAX_FILE_BYTES {
        return Ok(Err(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).max(read.len()));
    bytes.extend_from_slice(read);
    // A regular file is read up to its size, without a last read to find the end.
    let limit = if metadata.is_file() && len > 0 {
        len
    } else {
        MAX_FILE_BYTES + 1
    };
    file.take(limit.saturating_sub(read.len() as u64))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Ok(Err(bytes.len() as u64));
    }
    Ok(Ok(bytes))
}

/// Bytes a regular file is first read into: most manifests fit.
const FIRST_READ_BYTES: usize = 64 * 1024;

/// Reads a regular file. A file that fits in [`FIRST_READ_BYTES`] costs one system call: a
/// read from a regular file returns less than asked only at its end, so neither its size
/// (a `statx`) nor a last empty read is needed. A larger one is read on by [`read_limited`].
fn read_regular(mut file: File) -> ReadResult {
    use std::cell::RefCell;
    use std::io::Read as _;
    thread_local! {
        static FIRST_READ: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    FIRST_READ.with_borrow_mut(|buffer| {
        buffer.resize(FIRST_READ_BYTES, 0);
        let read = file.read(buffer)?;
        if read < buffer.len() {
            return Ok(Ok(buffer[..read].to_vec()));
        }
        read_limited(file, buffer)
    })
}

/// `path` relative to the repository root, whichever of the two is spelled absolute.
fn relative_to(path: &Path, root: Option<&Path>) -> PathBuf {
    let Some(root) = root else {
        return path.to_path_buf();
    };
    // A walked path is the root's spelling, a separator and the rest: cut as text, which
    // `strip_prefix` would compare component by component instead (for every file).
    let rest = path
        .to_str()
        .zip(root.to_str())
        .and_then(|(path, root)| path.strip_prefix(root)?.strip_prefix('/'))
        .filter(|rest| cfg!(unix) && !rest.is_empty() && !rest.starts_with('/'));
    if let Some(rest) = rest {
        return PathBuf::from(rest);
    }
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

/// Indexes a file's text and picks the documents to parse.
fn prepare(display: String, rel: PathBuf, text: String, reported: bool, depth: Depth) -> Prepared {
    let is_kustomization = kustomize::is_kustomization_file(&rel);
    let lines = LineIndex::new(&text);
    let suppressions = suppress::parse(&text, &lines);
    let documents = if is_kustomization {
        // kustomize reads the first document of a kustomization file only.
        std::iter::once(0..text.len()).collect()
    } else {
        split::documents(&text)
    };
    Prepared {
        file: SourceFile {
            path: display,
            rel,
            text,
            lines,
            suppressions,
            reported,
        },
        is_kustomization,
        documents,
        depth,
        parsed: None,
    }
}

/// The Flux kind a document's `kind:` (and `apiVersion:`, when it could be read) lines name.
fn sniffed_flux_kind(kind: &str, api_version: Option<&str>) -> Option<FluxKind> {
    match api_version {
        Some(api_version) => FluxKind::from_type(api_version, kind),
        None => FluxKind::from_name(kind),
    }
}

impl Prepared {
    /// The text of each of its documents.
    fn document_texts(&self) -> impl Iterator<Item = &str> {
        self.documents
            .iter()
            .map(|range| &self.file.text[range.clone()])
    }
}

impl Parsed {
    fn extend(&mut self, other: Parsed) {
        append(&mut self.resources, other.resources);
        self.kustomize = self.kustomize.take().or(other.kustomize);
        append(&mut self.errors, other.errors);
        append(&mut self.crds, other.crds);
        append(&mut self.deferred_crds, other.deferred_crds);
    }
}

/// `more` after what `list` holds; taken whole when `list` is empty, as it is for the first
/// (mostly the only) batch of a file's documents.
fn append<T>(list: &mut Vec<T>, more: Vec<T>) {
    if list.is_empty() {
        *list = more;
    } else {
        list.extend(more);
    }
}

/// Parses some documents of a prepared file (when linting, HelmReleases without their Helm
/// values). A syntax error ends its document only: the
/// documents after it are still read.
///
/// With `crds_now`, a CRD of a context file is parsed only when it has one of those kinds, and
/// set aside otherwise (see [`parse_deferred_crds`]); without, every CRD is parsed.
fn parse_documents(
    prepared: &Prepared,
    documents: &[Range<usize>],
    crds_now: Option<&HashSet<String>>,
) -> Parsed {
    let file = &prepared.file;
    let text = file.text.as_str();
    let mut parsed = Parsed::default();
    let mut roots = Vec::new();
    for range in documents {
        let mut excision = None;
        if prepared.depth == Depth::Verdicts && !prepared.is_kustomization {
            let document = &text[range.clone()];
            let sniffed = split::sniff_kind(document);
            let kind = match sniffed {
                Sniff::Object { kind, .. } => kind,
                _ => "",
            };
            if kind == "CustomResourceDefinition" && !file.reported {
                let wanted_now = crds_now
                    .is_none_or(|kinds| kinds.iter().any(|k| split::has_kind_line(document, k)));
                if !wanted_now {
                    parsed.deferred_crds.push(range.clone());
                    continue;
                }
                if let Some(root) = parse_schema_only(document) {
                    roots.push(root);
                    continue;
                }
            }
            if kind == "HelmRelease" {
                excision = split::helm_values_block(document).map(|v| v.shifted(range.start));
            }
        }
        let loaded = yaml::load_documents_in(text, range.clone(), excision, |doc| {
            if prepared.is_kustomization {
                if parsed.kustomize.is_none() {
                    let dir = file.rel.parent().map(Path::to_path_buf).unwrap_or_default();
                    parsed.kustomize = Some(KustomizeFile::from_node(0, dir, doc.root));
                }
                return;
            }
            collect_resources(doc.root, doc.span.start, &mut parsed.resources, &mut roots);
        });
        if let Err(e) = loaded {
            let (line, column) = file.lines.position(text, e.offset);
            parsed.errors.push(InputError {
                file: file.path.clone(),
                line,
                column,
                message: e.message,
            });
        }
    }
    parsed.crds = roots
        .into_iter()
        .map(|root| CrdDocument {
            path: file.path.clone(),
            root,
            explicit: false,
        })
        .collect();
    parsed
}

/// A context file's CRD serves the schema check alone: it is parsed without its descriptions
/// (see [`split::without_descriptions`]), and not listed as a resource (its positions are
/// those of the shortened text). `None` to parse it as any other document: nothing to leave
/// out, or the shortened text is not one `apiextensions.k8s.io` document (then the whole
/// parse reports any error where it truly is).
fn parse_schema_only(document: &str) -> Option<Node> {
    let shortened = split::without_descriptions(document)?;
    let mut roots = Vec::new();
    yaml::load_documents_in(&shortened, 0..shortened.len(), None, |doc| {
        roots.push(doc.root);
    })
    .ok()?;
    let [root] = <[Node; 1]>::try_from(roots).ok()?;
    let is_crd = root
        .get("apiVersion")
        .and_then(Node::as_str)
        .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"));
    is_crd.then_some(root)
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
    let span = Span::new(doc_start, root.span.end);
    let header = Span::new(doc_start, root.span.start);
    let kind = kind.to_owned();
    let is_crd =
        kind == "CustomResourceDefinition" && api_version.starts_with("apiextensions.k8s.io/");
    let (flux, tree) = if is_crd {
        crds.push(root);
        (None, None)
    } else if FluxKind::from_type(&api_version, &kind).is_some() {
        (FluxObject::from_node(root), None)
    } else {
        (None, Some(root))
    };
    out.push(Resource {
        file: 0,
        api_version,
        kind,
        name,
        declared_namespace,
        flux,
        tree,
        span,
        header,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_those_strip_prefix_gives() {
        let cases = [
            ("/repo", "/repo/apps/a.yaml"),
            (".", "./apps/a.yaml"),
            ("repo/", "repo/apps/a.yaml"),
            ("repo", "repo//apps/a.yaml"),
            ("repo/.", "repo/./apps/a.yaml"),
            ("/", "/apps/a.yaml"),
            ("", "apps/a.yaml"),
        ];
        for (root, path) in cases {
            let (root, path) = (Path::new(root), Path::new(path));
            let expected = path.strip_prefix(root).expect("inside the root");
            assert_eq!(
                relative_to(path, Some(root)),
                expected,
                "{path:?} in {root:?}"
            );
        }
    }

    #[test]
    fn a_regular_file_is_read_whole_whatever_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            FIRST_READ_BYTES - 1,
            FIRST_READ_BYTES,
            FIRST_READ_BYTES + 1,
            3 * FIRST_READ_BYTES + 5,
        ] {
            let path = dir.path().join(format!("{len}.yaml"));
            let written: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &written).expect("write");
            let read = File::open(&path).and_then(read_regular).expect("read");
            assert_eq!(read, Ok(written), "{len} bytes");
        }
    }
}
