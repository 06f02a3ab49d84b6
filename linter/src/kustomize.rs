//! kustomization.yaml files: what they include and the namespace they impose.

use std::path::{Component, Path, PathBuf};

use crate::yaml::{Node, Span};

/// The file names kustomize recognises, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

pub fn is_kustomization_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| KUSTOMIZATION_FILE_NAMES.contains(&n))
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
}

impl KustomizeFile {
    pub fn from_node(file: usize, dir: PathBuf, root: &Node) -> KustomizeFile {
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
        for field in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
            for item in root.get(field).and_then(Node::as_seq).unwrap_or_default() {
                let path = item
                    .as_str()
                    .or_else(|| item.get("path").and_then(Node::as_str));
                // Inline patches are YAML text, not file names.
                if let Some(path) = path.filter(|p| !p.contains('\n')) {
                    patches.push(path.to_owned());
                }
            }
        }
        KustomizeFile {
            file,
            dir,
            namespace,
            entries,
            patches,
        }
    }
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
    entry.contains("://")
        || entry.contains("?ref=")
        || HOST_PREFIXES.iter().any(|p| entry.starts_with(p))
}

/// Joins a relative reference to a directory and removes `.` and `..` without touching the
/// file system. `None` when the path climbs above the repository root.
pub fn normalize(dir: &Path, reference: &str) -> Option<PathBuf> {
    // Unix paths are `/`-separated text: joined as text, without building a `PathBuf` one
    // component at a time (a repository's kustomizations name thousands of paths).
    if cfg!(unix) {
        if let Some(dir) = dir.to_str() {
            return normalize_text(dir, reference).map(PathBuf::from);
        }
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
    for segment in base.split('/').chain(reference.split('/')) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
