//! Finding manifests under a directory.
//!
//! Directories are listed on every core (by one thread more than cores), and each manifest is
//! handed to a visitor on the thread that listed it, so reading files overlaps listing
//! directories. Hidden entries (`.git`), Helm chart `templates/` (Go templates, not
//! manifests) and what `.gitignore` excludes are skipped. Only `.gitignore` files and
//! `.git/info/exclude` decide, as Git does: a `.gitignore` is read only where a listing shows
//! one, and the user's global excludes file is not read, so results do not differ between a
//! laptop and CI. Symbolic links are not followed.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::kustomize;
use crate::parallel;

mod directory;

use directory::{Directory, EntryType};

/// What a walk found: files with what the visitor made of them, sorted by path, and the
/// directories that could not be listed.
pub struct Walked<T> {
    pub files: Vec<(PathBuf, T)>,
    pub unlisted: Vec<(PathBuf, std::io::Error)>,
}

impl<T> Default for Walked<T> {
    fn default() -> Self {
        Walked {
            files: Vec::new(),
            unlisted: Vec::new(),
        }
    }
}

/// Whether a walk reads a file, by its name: YAML, JSON, and kustomize's extension-less
/// `Kustomization`. Compared as bytes: every entry of every directory is asked.
fn is_manifest(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    let has_extension = |ext: &[u8]| bytes.len() > ext.len() && bytes.ends_with(ext);
    has_extension(b".yaml")
        || has_extension(b".yml")
        || has_extension(b".json")
        || kustomize::is_kustomization_file(Path::new(name))
}

/// What a walk hands each manifest to: its path, spelled as the start is, and the file opened
/// (relative to its directory, see [`directory`]) or why it could not be.
pub type Visit<'a, T> = dyn Fn(&Path, std::io::Result<File>) -> T + Sync + 'a;

/// Walks `start` (a directory) and calls `visit` on each manifest under it. `repository_root`
/// is where `.gitignore` files start to apply (the ancestors of `start` up to it count).
/// `skip` sees canonical paths, and a directory it skips is not entered.
pub fn manifests<T: Send>(
    start: &Path,
    repository_root: Option<&Path>,
    skip: &(dyn Fn(&Path) -> bool + Sync),
    visit: &Visit<'_, T>,
) -> Walked<T> {
    // Walked paths are absolute and canonical so that `.gitignore` patterns and `skip` see one
    // spelling; what is reported and opened is the user's spelling.
    let absolute = match start.canonicalize() {
        Ok(absolute) => absolute,
        Err(error) => {
            return Walked {
                unlisted: vec![(start.to_path_buf(), error)],
                ..Walked::default()
            };
        }
    };
    let walk = Walk {
        skip,
        visit,
        queue: Mutex::new(Queue {
            jobs: vec![Job {
                dir: absolute.clone(),
                spelled: start.to_path_buf(),
                rules: inherited_rules(&absolute, repository_root),
            }],
            listing: 0,
            waiting: 0,
        }),
        changed: Condvar::new(),
    };
    let mut walked = Walked::default();
    // One thread more than cores: the walk's threads spend most of their time in the kernel
    // (listing, opening, reading), where one of them now and then waits (for a lock, a
    // wake-up, fresh memory) and leaves its core idle. Measured on the corpus, two cores:
    // 0.95-0.97x wall (paired runs, BENCHMARKS.md); a pre-commit run is unchanged.
    for done in parallel::on_threads(parallel::cores() + 1, || walk.work()) {
        walked.files.extend(done.files);
        walked.unlisted.extend(done.unlisted);
    }
    walked
        .files
        .sort_by_cached_key(|(path, _)| depth_first_key(path));
    walked
        .unlisted
        .sort_by_cached_key(|(path, _)| depth_first_key(path));
    walked
}

/// A key that orders paths as a depth-first walk by name, which is how `Path` compares
/// (component by component): the path's bytes with each separator made the lowest byte, so
/// `a/b` comes before `a.b`. Equal to `Path::cmp` for the walk's paths (one separator between
/// components, no `.`), and compared with one `memcmp` instead of component by component.
fn depth_first_key(path: &Path) -> Vec<u8> {
    let mut key = path.as_os_str().as_encoded_bytes().to_vec();
    for byte in &mut key {
        if std::path::is_separator(char::from(*byte)) {
            *byte = 0;
        }
    }
    key
}

/// The `.gitignore` rules in force in a directory: its own, then its parent's, and so on up to
/// `.git/info/exclude`. The first that matches a path decides, as in Git.
struct Rules {
    matcher: Gitignore,
    parent: Option<Arc<Rules>>,
}

fn is_ignored(mut rules: Option<&Rules>, path: &Path, is_dir: bool) -> bool {
    while let Some(level) = rules {
        match level.matcher.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => rules = level.parent.as_deref(),
        }
    }
    false
}

fn push_rules(parent: Option<Arc<Rules>>, file: &Path) -> Option<Arc<Rules>> {
    // A file with a bad pattern still applies its other patterns, as Git does.
    let (matcher, _error) = Gitignore::new(file);
    if matcher.is_empty() {
        return parent;
    }
    Some(Arc::new(Rules { matcher, parent }))
}

/// `.git/info/exclude`: its patterns are relative to the repository root, not to the file's
/// own directory (`apps/x.yaml` and `/apps/x.yaml` name the root's `apps/`).
fn push_exclude(parent: Option<Arc<Rules>>, root: &Path, file: &Path) -> Option<Arc<Rules>> {
    let mut builder = GitignoreBuilder::new(root);
    // A bad pattern leaves the others in force, as Git does.
    let _ = builder.add(file);
    let matcher = builder.build().ok()?;
    if matcher.is_empty() {
        return parent;
    }
    Some(Arc::new(Rules { matcher, parent }))
}

/// Rules from above `dir`: the repository's `.git/info/exclude` and the `.gitignore` of each
/// directory from the repository root down to `dir`'s parent.
fn inherited_rules(dir: &Path, repository_root: Option<&Path>) -> Option<Arc<Rules>> {
    let root = repository_root.and_then(|r| r.canonicalize().ok())?;
    let below = dir.strip_prefix(&root).ok()?;
    let mut rules = None;
    let exclude = root.join(".git/info/exclude");
    if exclude.is_file() {
        rules = push_exclude(rules, &root, &exclude);
    }
    let mut ancestor = root.clone();
    for component in below.components() {
        let gitignore = ancestor.join(".gitignore");
        if gitignore.is_file() {
            rules = push_rules(rules, &gitignore);
        }
        ancestor.push(component);
    }
    rules
}

struct Job {
    /// Absolute and canonical.
    dir: PathBuf,
    /// The same directory as the user spelled the start (what reports show).
    spelled: PathBuf,
    rules: Option<Arc<Rules>>,
}

struct Queue {
    jobs: Vec<Job>,
    /// Directories being listed: while any is, more jobs may come.
    listing: usize,
    /// Workers waiting for a job: only they need waking (a wake-up is a system call).
    waiting: usize,
}

struct Walk<'a, T> {
    skip: &'a (dyn Fn(&Path) -> bool + Sync),
    visit: &'a Visit<'a, T>,
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl<T> Walk<'_, T> {
    /// One worker: takes directories until none is left and none is being listed.
    fn work(&self) -> Walked<T> {
        let mut done = Walked::default();
        while let Some(job) = self.next_job() {
            let mut listed = Listed {
                walk: self,
                subdirs: Vec::new(),
            };
            listed.subdirs = self.list(&job, &mut done);
        }
        done
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A worker that panicked holding the lock re-raises its panic at the join.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn next_job(&self) -> Option<Job> {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop() {
                queue.listing += 1;
                return Some(job);
            }
            if queue.listing == 0 {
                return None;
            }
            queue.waiting += 1;
            queue = self
                .changed
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.waiting -= 1;
        }
    }

    /// Lists one directory: visits its manifests, returns its subdirectories to walk.
    fn list(&self, job: &Job, done: &mut Walked<T>) -> Vec<Job> {
        let listed = Directory::open(&job.dir)
            .and_then(|mut directory| Ok((directory.entries()?, directory)));
        let (entries, directory) = match listed {
            Ok(listed) => listed,
            Err(error) => {
                done.unlisted.push((job.spelled.clone(), error));
                return Vec::new();
            }
        };
        let has_file = |name: &str| {
            entries
                .iter()
                .any(|(n, t)| n == name && *t == EntryType::File)
        };
        let rules = if has_file(".gitignore") {
            push_rules(job.rules.clone(), &job.dir.join(".gitignore"))
        } else {
            job.rules.clone()
        };
        let is_chart = has_file("Chart.yaml");
        let mut subdirs = Vec::new();
        for (name, entry_type) in &entries {
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = child(&job.dir, name);
            if *entry_type == EntryType::Dir {
                let templates = is_chart && name == "templates";
                if !templates && !is_ignored(rules.as_deref(), &path, true) && !(self.skip)(&path) {
                    subdirs.push(Job {
                        dir: path,
                        spelled: child(&job.spelled, name),
                        rules: rules.clone(),
                    });
                }
            } else if *entry_type == EntryType::File
                && is_manifest(name)
                && !is_ignored(rules.as_deref(), &path, false)
                && !(self.skip)(&path)
            {
                let spelled = child(&job.spelled, name);
                let visited = (self.visit)(&spelled, directory.open_file(name));
                done.files.push((spelled, visited));
            }
        }
        subdirs
    }
}

/// `dir.join(name)` in one allocation (`join` copies `dir`, then grows the copy for `name`):
/// two paths are made for each of the thousands of entries a repository has.
fn child(dir: &Path, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
    path.push(dir);
    path.push(name);
    path
}

/// The end of listing a directory: its subdirectories join the queue, and waiting workers
/// wake if there is work for them or nothing left at all. Done on drop, so that a visitor that
/// panics cannot leave the other workers waiting forever (the panic is raised at the join).
struct Listed<'w, 'a, T> {
    walk: &'w Walk<'a, T>,
    subdirs: Vec<Job>,
}

impl<T> Drop for Listed<'_, '_, T> {
    fn drop(&mut self) {
        let mut queue = self.walk.lock();
        queue.jobs.append(&mut self.subdirs);
        queue.listing -= 1;
        let wake = queue.waiting > 0 && (!queue.jobs.is_empty() || queue.listing == 0);
        drop(queue);
        if wake {
            self.walk.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn walked(start: &Path, root: Option<&Path>) -> Vec<String> {
        let walked = manifests(start, root, &|_| false, &|p, file| {
            assert!(file.is_ok(), "{} opens", p.display());
            p.to_path_buf()
        });
        assert!(walked.unlisted.is_empty());
        walked
            .files
            .into_iter()
            .map(|(path, visited)| {
                assert_eq!(path, visited, "the visitor sees the reported spelling");
                path.strip_prefix(start).unwrap().display().to_string()
            })
            .collect()
    }

    #[test]
    fn manifests_are_known_by_their_names() {
        for name in [
            "a.yaml",
            "b.yml",
            "c.json",
            "a.b.yaml",
            "Kustomization",
            "kustomization.yaml",
        ] {
            assert!(is_manifest(OsStr::new(name)), "{name}");
        }
        for name in [
            "yaml",
            "a.yaml.bak",
            "a.YAML",
            "README.md",
            "kustomization",
            "a.jsonnet",
        ] {
            assert!(!is_manifest(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn honours_gitignore_hidden_entries_and_chart_templates() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join(".git")).unwrap();
        write(root, ".git/info/exclude", "excluded.yaml\n");
        write(root, ".gitignore", "/build/\n*.generated.yaml\n");
        write(
            root,
            "apps/.gitignore",
            "secret.yaml\n!keep.generated.yaml\n",
        );
        for rel in [
            "a.yaml",
            "b.yml",
            "c.json",
            "notes.txt",
            "excluded.yaml",
            "build/out.yaml",
            "x.generated.yaml",
            "apps/secret.yaml",
            "apps/keep.generated.yaml",
            "apps/drop.generated.yaml",
            "apps/base/Kustomization",
            "apps/z/deep/d.yaml",
            ".hidden/h.yaml",
            "apps/.h.yaml",
            "chart/Chart.yaml",
            "chart/templates/t.yaml",
            "other/templates/t.yaml",
        ] {
            write(root, rel, "kind: X\n");
        }
        assert_eq!(
            walked(root, Some(root)),
            [
                "a.yaml",
                "apps/base/Kustomization",
                "apps/keep.generated.yaml",
                "apps/z/deep/d.yaml",
                "b.yml",
                "c.json",
                "chart/Chart.yaml",
                "other/templates/t.yaml",
            ]
        );
        // Walking a subdirectory still applies the repository's rules above it.
        assert_eq!(
            walked(&root.join("apps"), Some(root)),
            ["base/Kustomization", "keep.generated.yaml", "z/deep/d.yaml"]
        );
    }

    #[test]
    fn sorts_like_paths_compare() {
        let mut paths: Vec<PathBuf> = [
            "a.b", "a/b", "a", "a-b/c", "a/b/c", "ab", "a/b.yaml", "a/b/a", "B", "a/c", "/x",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let mut expected = paths.clone();
        expected.sort();
        paths.sort_by_cached_key(|p| depth_first_key(p));
        assert_eq!(paths, expected);
    }

    #[test]
    fn skip_prunes_directories_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for rel in ["a/one.yaml", "a/two.yaml", "b/three.yaml"] {
            write(&root, rel, "kind: X\n");
        }
        let skipped = [root.join("a/one.yaml"), root.join("b")];
        let walked = manifests(&root, None, &|p| skipped.iter().any(|s| s == p), &|_, _| ());
        let files: Vec<_> = walked.files.into_iter().map(|(p, ())| p).collect();
        assert_eq!(files, [root.join("a/two.yaml")]);
    }

    #[test]
    fn keeps_a_relative_spelling() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sub/a.yaml", "kind: X\n");
        let start = PathBuf::from(dir.path()).join("sub/../sub");
        let walked = manifests(&start, None, &|_| false, &|_, _| ());
        assert_eq!(walked.files.len(), 1);
        assert_eq!(walked.files[0].0, start.join("a.yaml"));
    }

    #[test]
    fn a_visitor_that_panics_ends_the_walk_with_its_panic() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20 {
            write(dir.path(), &format!("d{i}/e/f/a.yaml"), "kind: X\n");
        }
        let walked = std::panic::catch_unwind(|| {
            manifests(dir.path(), None, &|_| false, &|path, _| {
                assert!(!path.ends_with("d7/e/f/a.yaml"), "the visitor fails");
            })
        });
        assert!(walked.is_err());
    }

    #[test]
    fn reports_a_start_it_cannot_list() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let walked = manifests(&gone, None, &|_| false, &|_, _| ());
        assert!(walked.files.is_empty());
        assert_eq!(walked.unlisted.len(), 1);
        assert_eq!(walked.unlisted[0].0, gone);
        assert_eq!(walked.unlisted[0].1.kind(), std::io::ErrorKind::NotFound);
    }

    /// `git`, or `None` where it is not installed (the test then says so and passes).
    fn git(dir: &Path, args: &[&str], stdin: &str) -> Option<String> {
        use std::io::Write as _;
        let home = dir.join(".test-home");
        std::fs::create_dir_all(&home).unwrap();
        // Only the repository's own rules: no global or system excludes file.
        let mut child = std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Some(String::from_utf8(output.stdout).unwrap())
    }

    #[test]
    fn excludes_what_git_check_ignore_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = &dir.path().canonicalize().unwrap();
        if git(root, &["init", "-q"], "").is_none() {
            crate::test_skipped("no git");
            return;
        }
        // Patterns with a slash are anchored at the root, in .git/info/exclude as in a
        // .gitignore; without one they match at any depth.
        write(
            root,
            ".git/info/exclude",
            "apps/nginx.yaml\n/root-only.yaml\ndeep/*.yaml\n!deep/keep.yaml\n**/gen/*.yaml\n\
             nested/dir/\nanywhere.yaml\n",
        );
        write(root, "team/.gitignore", "sub/z.yaml\n/top.yaml\n");
        let files = [
            "apps/nginx.yaml",
            "apps/other.yaml",
            "x/apps/nginx.yaml",
            "root-only.yaml",
            "sub/root-only.yaml",
            "deep/a.yaml",
            "deep/keep.yaml",
            "deep/sub/b.yaml",
            "a/gen/c.yaml",
            "gen/d.yaml",
            "nested/dir/e.yaml",
            "other/nested/dir/f.yaml",
            "anywhere.yaml",
            "q/r/anywhere.yaml",
            "team/sub/z.yaml",
            "team/x/sub/z.yaml",
            "team/top.yaml",
            "team/y/top.yaml",
        ];
        for rel in files {
            write(root, rel, "kind: X\n");
        }
        let listed = files.join("\n") + "\n";
        let ignored = git(root, &["check-ignore", "--stdin"], &listed).unwrap();
        let ignored: Vec<&str> = ignored.lines().collect();
        // The tree does test both sides.
        assert!(
            ignored.len() >= 8 && ignored.len() <= files.len() - 6,
            "{ignored:?}"
        );
        let mut expected: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !ignored.contains(f))
            .collect();
        expected.sort_by_key(|f| depth_first_key(Path::new(f)));
        assert_eq!(walked(root, Some(root)), expected);
        // The same from a subdirectory, with the root's rules inherited.
        let team: Vec<String> = expected
            .iter()
            .filter_map(|f| f.strip_prefix("team/"))
            .map(str::to_owned)
            .collect();
        assert_eq!(walked(&root.join("team"), Some(root)), team);
    }
}
