//! kustomization.yaml files: what they include and the namespace they impose.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use foldhash::HashSet;

use crate::yaml::{Node, Span};

/// The file names kustomize recognises, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

pub fn is_kustomization_file(path: &Path) -> bool {
    // The bytes after the last separator: every file a walk reads is asked, and
    // `Path::file_name` parses components. A path ending in a separator or in `.`/`..`
    // names no file (it is left to `file_name`).
    let bytes = path.as_os_str().as_encoded_bytes();
    let name = bytes
        .rsplit(|b| std::path::is_separator(char::from(*b)))
        .next()
        .unwrap_or(bytes);
    if name.is_empty() || name == b"." || name == b".." {
        return path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| KUSTOMIZATION_FILE_NAMES.contains(&n));
    }
    KUSTOMIZATION_FILE_NAMES
        .iter()
        .any(|known| known.as_bytes() == name)
}

/// One entry of `resources`, `bases` or `components`.
#[derive(Debug, Clone)]
pub struct KustomizeEntry {
    pub field: &'static str,
    pub index: usize,
    pub value: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct KustomizeFile {
    /// Index of the file in the inventory.
    pub file: usize,
    /// Directory of the file, relative to the repository root.
    pub dir: PathBuf,
    /// The `namespace:` field, which kustomize sets on (and overrides in) every resource.
    pub namespace: Option<(String, Span)>,
    pub entries: Vec<KustomizeEntry>,
    /// Files applied as patches (`patches[].path`, `patchesStrategicMerge`), as written:
    /// partial objects, not resources.
    pub patches: Vec<String>,
    /// What each patch entry selects (`fix` must not move an object out from under a patch
    /// that selects it by its namespace).
    pub patch_selectors: Vec<PatchSelector>,
    /// The kustomization as parsed: builds read the rest of it.
    pub root: Node,
}

/// What one entry of `patches`, `patchesStrategicMerge` or `patchesJson6902` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSelector {
    pub field: &'static str,
    pub index: usize,
    /// kustomize matches `patchesJson6902` entries after this kustomization's own
    /// `namespace:` is applied, and `patches`/`patchesStrategicMerge` entries before it.
    pub after_namespace: bool,
    pub selects: Selects,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selects {
    /// Objects matching a `target:` selector, or the one object an inline strategic-merge
    /// patch names. A field left out matches anything; kustomize reads a selector's fields
    /// as regular expressions.
    Matching {
        kind: Option<String>,
        name: Option<String>,
        namespace: Option<String>,
    },
    /// The objects the documents of a strategic-merge patch file name (the path as written).
    NamedIn(String),
}

impl KustomizeFile {
    pub fn from_node(file: usize, dir: PathBuf, root: Node) -> KustomizeFile {
        let namespace = root
            .get("namespace")
            .and_then(|n| n.as_str().map(|s| (s.to_owned(), n.span)));
        let mut entries = Vec::new();
        for field in ["resources", "bases", "components"] {
            let Some(items) = root.get(field).and_then(Node::as_seq) else {
                continue;
            };
            for (index, item) in items.iter().enumerate() {
                if let Some(value) = item.as_str() {
                    entries.push(KustomizeEntry {
                        field,
                        index,
                        value: value.to_owned(),
                        span: item.span,
                    });
                }
            }
        }
        let mut patches = Vec::new();
        let mut patch_selectors = Vec::new();
        for field in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
            for (index, item) in root
                .get(field)
                .and_then(Node::as_seq)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = item
                    .as_str()
                    .or_else(|| item.get("path").and_then(Node::as_str));
                // Inline patches are YAML text, not file names.
                let path = path.filter(|p| !p.contains('\n'));
                if let Some(path) = path {
                    patches.push(path.to_owned());
                }
                if let Some(selects) = patch_selects(item, path) {
                    patch_selectors.push(PatchSelector {
                        field,
                        index,
                        after_namespace: field == "patchesJson6902",
                        selects,
                    });
                }
            }
        }
        KustomizeFile {
            file,
            dir,
            namespace,
            entries,
            patches,
            patch_selectors,
            root,
        }
    }
}

/// What a patch entry selects: its `target:`, else (a strategic-merge patch) the object its
/// file or its inline text names. `None` when that cannot be read.
pub(crate) fn patch_selects(item: &Node, path: Option<&str>) -> Option<Selects> {
    let field = |node: &Node, key: &str| node.get(key).and_then(Node::as_str).map(str::to_owned);
    if let Some(target) = item.get("target") {
        return Some(Selects::Matching {
            kind: field(target, "kind"),
            name: field(target, "name"),
            namespace: field(target, "namespace"),
        });
    }
    if let Some(path) = path {
        return Some(Selects::NamedIn(path.to_owned()));
    }
    // An inline strategic-merge patch (a JSON 6902 patch always has a target): a `patch:`
    // string, or a `patchesStrategicMerge` entry that is YAML text rather than a file name.
    let text = item
        .get("patch")
        .and_then(Node::as_str)
        .or_else(|| item.as_str().filter(|text| text.contains('\n')))?;
    let mut named = None;
    let _ = crate::yaml::load_documents(text, |doc| {
        let metadata = doc.root.get("metadata");
        named.get_or_insert(Selects::Matching {
            kind: field(&doc.root, "kind"),
            name: metadata.and_then(|m| field(m, "name")),
            namespace: metadata.and_then(|m| field(m, "namespace")),
        });
    });
    named
}

/// Whether a kustomize resource entry names a remote target rather than a local path.
pub fn is_remote(entry: &str) -> bool {
    const HOST_PREFIXES: &[&str] = &[
        "github.com/",
        "gitlab.com/",
        "bitbucket.org/",
        "git@",
        "git::",
        "ssh:",
    ];
    // A search for one byte first: a substring search costs more to set up than a local
    // path is long, and most entries are local paths.
    (entry.contains(':') && entry.contains("://"))
        || (entry.contains('?') && entry.contains("?ref="))
        || HOST_PREFIXES.iter().any(|p| entry.starts_with(p))
}

/// A path as a map key: its bytes, which `Path` would hash and compare component by
/// component instead, far more slowly. The paths met here are almost always normalised
/// already (no `.` inside, no doubled or trailing separator); the rare other one is rebuilt
/// from its components so that keys stay equal exactly when the paths are.
pub type PathKey<'a> = Cow<'a, [u8]>;

pub fn path_key(path: &Path) -> PathKey<'_> {
    let bytes = path.as_os_str().as_encoded_bytes();
    // Each separator followed by a component other than `.`. (On Windows `\\` separates
    // too: every key is rebuilt there.)
    let normalised = cfg!(unix)
        && !bytes.iter().enumerate().any(|(at, &byte)| {
            byte == b'/'
                && matches!(
                    &bytes[at + 1..],
                    [] | [b'/', ..] | [b'.'] | [b'.', b'/', ..]
                )
        });
    if normalised {
        return Cow::Borrowed(bytes);
    }
    let rebuilt: PathBuf = path.components().collect();
    Cow::Owned(rebuilt.into_os_string().into_encoded_bytes())
}

/// The files kustomize applies as patches (see [`KustomizeFile::patches`]), relative to the
/// repository root. Asked about every Flux object's file, so looked up by [`path_key`].
#[derive(Default)]
pub struct PatchFiles {
    keys: HashSet<Vec<u8>>,
}

impl PatchFiles {
    pub fn of(kustomizations: &[KustomizeFile]) -> PatchFiles {
        let keys = kustomizations
            .iter()
            .flat_map(|k| k.patches.iter().filter_map(|p| normalize(&k.dir, p)))
            .map(|path| path_key(&path).into_owned())
            .collect();
        PatchFiles { keys }
    }

    /// Whether `rel` (relative to the repository root) is applied as a patch.
    pub fn contains(&self, rel: &Path) -> bool {
        !self.keys.is_empty() && self.keys.contains(path_key(rel).as_ref())
    }
}

/// Joins a relative reference to a directory and removes `.` and `..` without touching the
/// file system. `None` when the path climbs above the repository root.
pub fn normalize(dir: &Path, reference: &str) -> Option<PathBuf> {
    // Unix paths are `/`-separated text: joined as text, without building a `PathBuf` one
    // component at a time (a repository's kustomizations name thousands of paths).
    if cfg!(unix)
        && let Some(dir) = dir.to_str()
    {
        return normalize_text(dir, reference).map(PathBuf::from);
    }
    normalize_components(dir, reference)
}

/// [`normalize`] by `Path`'s components: for every platform and every path.
fn normalize_components(dir: &Path, reference: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let reference = Path::new(reference);
    let joined = if reference.is_absolute() {
        reference.to_path_buf()
    } else {
        dir.join(reference)
    };
    for part in joined.components() {
        match part {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
        }
    }
    Some(out)
}

/// [`normalize`] for `/`-separated text: an absolute reference stands alone (made relative),
/// empty and `.` segments go, `..` removes the segment before it.
fn normalize_text(dir: &str, reference: &str) -> Option<String> {
    let base = if reference.starts_with('/') { "" } else { dir };
    let mut out = String::with_capacity(base.len() + reference.len() + 1);
    for segment in segments(base).chain(segments(reference)) {
        match segment {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return None;
                }
                out.truncate(out.rfind('/').unwrap_or(0));
            }
            name => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
            }
        }
    }
    Some(out)
}

/// The `/`-separated segments of `path`, empty ones included, as `str::split('/')` gives them.
/// Found byte by byte: path segments are a few bytes long, shorter than a vectorised search
/// takes to set up (kustomizations name thousands of paths).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == b'/') {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kustomization_files_are_known_as_path_file_name_tells() {
        for path in [
            "kustomization.yaml",
            "apps/kustomization.yml",
            "/repo/apps/Kustomization",
            "apps/kustomization.yaml/",
            "apps/kustomization.yaml/.",
            "apps/kustomization.yaml/..",
            "apps/kustomization.yaml.bak",
            "apps/my-kustomization.yaml",
            "kustomization",
            "",
            "/",
        ] {
            let by_name = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| KUSTOMIZATION_FILE_NAMES.contains(&n));
            assert_eq!(is_kustomization_file(Path::new(path)), by_name, "{path:?}");
        }
    }

    #[test]
    fn segments_are_those_of_a_split_at_slashes() {
        for path in ["", "/", "a", "a/b", "/a/b/", "a//b", "./a/../b", "é/ü"] {
            assert_eq!(
                segments(path).collect::<Vec<_>>(),
                path.split('/').collect::<Vec<_>>(),
                "{path:?}"
            );
        }
    }

    #[test]
    fn patch_entries_say_what_they_select() {
        let text = "\
patches:
  - target: {kind: HelmRelease, name: podinfo, namespace: apps}
    patch: |
      - op: remove
        path: /spec/suspend
  - path: release-patch.yaml
  - patch: |
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: settings
        namespace: apps
patchesStrategicMerge:
  - legacy.yaml
  - |
    apiVersion: v1
    kind: Secret
    metadata:
      name: token
      namespace: apps
patchesJson6902:
  - target: {kind: HelmRelease, name: podinfo}
    path: ops.yaml
";
        let mut root = None;
        crate::yaml::load_documents(text, |doc| root = Some(doc.root)).unwrap();
        let file = KustomizeFile::from_node(0, PathBuf::from("apps"), root.unwrap());
        let matching = |kind: &str, name: &str, namespace: Option<&str>| Selects::Matching {
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: namespace.map(Into::into),
        };
        let selected: Vec<_> = file
            .patch_selectors
            .iter()
            .map(|p| (p.field, p.index, p.after_namespace, p.selects.clone()))
            .collect();
        assert_eq!(
            selected,
            [
                (
                    "patches",
                    0,
                    false,
                    matching("HelmRelease", "podinfo", Some("apps"))
                ),
                (
                    "patches",
                    1,
                    false,
                    Selects::NamedIn("release-patch.yaml".into())
                ),
                (
                    "patches",
                    2,
                    false,
                    matching("ConfigMap", "settings", Some("apps"))
                ),
                (
                    "patchesStrategicMerge",
                    0,
                    false,
                    Selects::NamedIn("legacy.yaml".into())
                ),
                (
                    "patchesStrategicMerge",
                    1,
                    false,
                    matching("Secret", "token", Some("apps"))
                ),
                (
                    "patchesJson6902",
                    0,
                    true,
                    matching("HelmRelease", "podinfo", None)
                ),
            ]
        );
        assert_eq!(
            file.patches,
            ["release-patch.yaml", "legacy.yaml", "ops.yaml"]
        );
    }

    #[test]
    fn path_keys_are_equal_exactly_when_the_paths_are() {
        let paths = [
            "apps/base",
            "apps//base",
            "apps/./base",
            "apps/base/",
            "apps/base/.",
            "./apps/base",
            "apps/bas",
            "apps",
            "",
        ];
        for a in paths {
            for b in paths {
                let (a, b) = (Path::new(a), Path::new(b));
                assert_eq!(path_key(a) == path_key(b), a == b, "{a:?} vs {b:?}");
            }
        }
        // The common case borrows.
        assert!(matches!(path_key(Path::new("apps/base")), Cow::Borrowed(_)));
    }

    #[test]
    fn patch_files_are_found_however_the_path_is_spelled() {
        let kustomization = KustomizeFile {
            file: 0,
            dir: PathBuf::from("apps/prod"),
            namespace: None,
            entries: Vec::new(),
            patches: vec!["patch.yaml".into(), "../base/./shared.yaml".into()],
            patch_selectors: Vec::new(),
            root: crate::yaml::Node::from_json(&serde_json::json!({})).unwrap(),
        };
        let patches = PatchFiles::of(&[kustomization]);
        assert!(patches.contains(Path::new("apps/prod/patch.yaml")));
        assert!(patches.contains(Path::new("apps//base/shared.yaml")));
        assert!(!patches.contains(Path::new("apps/prod/release.yaml")));
        assert!(!PatchFiles::default().contains(Path::new("apps/prod/patch.yaml")));
    }

    #[test]
    fn remote_and_local_entries() {
        assert!(is_remote("https://github.com/org/repo//base?ref=v1"));
        assert!(is_remote("github.com/org/repo/base?ref=main"));
        assert!(is_remote("git@github.com:org/repo.git"));
        assert!(!is_remote("../base"));
        assert!(!is_remote("deployment.yaml"));
        assert!(!is_remote("./github.com-mirror/app"));
    }

    #[test]
    fn normalizes_relative_references() {
        assert_eq!(
            normalize(Path::new("apps/prod"), "../base"),
            Some(PathBuf::from("apps/base"))
        );
        assert_eq!(
            normalize(Path::new(""), "./clusters/prod"),
            Some(PathBuf::from("clusters/prod"))
        );
        assert_eq!(normalize(Path::new("a"), "../../x"), None);
    }

    /// The text fast path agrees with `Path`'s own reading of the same paths.
    #[test]
    fn text_normalization_agrees_with_path_components() {
        let dirs = ["", "a", "a/b", "./a//b/", "a/./b", "../a"];
        let references = [
            "", ".", "..", "../..", "x", "./x", "x/", "x//y", "x/./y", "x/../y", "../x", "../../x",
            "/abs/x", "/", "//x", "x/..", "x/../..", "./../x/.",
        ];
        for dir in dirs {
            for reference in references {
                // Compared as text: `Path` equality would overlook a stray separator.
                let by_components = normalize_components(Path::new(dir), reference)
                    .map(|p| p.into_os_string().into_string().unwrap());
                assert_eq!(
                    normalize_text(dir, reference),
                    by_components,
                    "{dir:?} + {reference:?}"
                );
            }
        }
    }
}
