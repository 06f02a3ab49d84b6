//! Kustomization trees generated from the fuzzer's bytes → `build` (what Flux applies) ends,
//! within the fuzzer's time bound, without a panic; and it names cycles exactly:
//! - every cycle of kustomizations that a build enters (through `resources` or `components`)
//!   is reported as an error naming a directory on it;
//! - every cycle error names a directory that is on a cycle.
//!
//! A tree is up to four directories `k/d0`… under a Flux Kustomization building `k/d0`. Each
//! directory holds `objects.yaml` (a ConfigMap and a HelmRelease) and, mostly, a
//! `kustomization.yaml` (sometimes a Component) whose `resources` and `components` point at
//! its own files, at the other directories (itself included), at missing files, outside the
//! repository, or at a Flux Kustomization that builds another directory; some set a namespace,
//! a name prefix or a patch.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use fluxfence::Inventory;
use fluxfence::input::Source;

const MAX_DIRECTORIES: usize = 4;

/// The fuzzer's bytes, read as choices; past the end every choice is 0.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    fn below(&mut self, bound: usize) -> usize {
        self.0.next().map_or(0, |&b| usize::from(b) % bound.max(1))
    }
}

/// A generated tree: its files, and which directory includes which.
pub struct Tree {
    pub files: Vec<(String, String)>,
    /// `edges[i]`: the directories the kustomization of `k/d{i}` includes.
    pub edges: Vec<BTreeSet<usize>>,
}

pub fn generate(data: &[u8]) -> Tree {
    let mut choose = Choices(data.iter());
    let count = 1 + choose.below(MAX_DIRECTORIES);
    // The first directory always has a kustomization: the Flux Kustomization builds it.
    let has_kustomization: Vec<bool> = (0..count).map(|i| i == 0 || choose.below(8) != 0).collect();
    let mut files = vec![(
        "clusters/root.yaml".to_owned(),
        flux_kustomization("root", 0, choose.below(2) == 1),
    )];
    let mut edges = vec![BTreeSet::new(); count];
    for i in 0..count {
        let dir = format!("k/d{i}");
        files.push((
            format!("{dir}/objects.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  key: value\n\
                 ---\napiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  \
                 name: hr-{i}\nspec:\n  chart:\n    spec:\n      chart: app\n      sourceRef:\n        \
                 kind: HelmRepository\n        name: charts\n        namespace: flux-system\n"
            ),
        ));
        if !has_kustomization[i] {
            continue;
        }
        let mut text = if choose.below(5) == 0 {
            String::from("apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n")
        } else {
            String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
        };
        if choose.below(3) == 0 {
            let _ = writeln!(text, "namespace: ns-{}", choose.below(3));
        }
        if choose.below(4) == 0 {
            let _ = writeln!(text, "namePrefix: p{}-", choose.below(3));
        }
        text.push_str("resources:\n");
        for _ in 0..choose.below(5) {
            let target = choose.below(count);
            let entry = match choose.below(8) {
                0 | 1 => "objects.yaml".to_owned(),
                2..=4 => {
                    if has_kustomization[target] {
                        edges[i].insert(target);
                    }
                    format!("../d{target}")
                }
                5 => format!("../d{target}/objects.yaml"),
                6 => {
                    files.push((
                        format!("{dir}/flux-{target}.yaml"),
                        flux_kustomization(&format!("d{i}-to-d{target}"), target, false),
                    ));
                    format!("flux-{target}.yaml")
                }
                _ => ["missing.yaml", "../../outside", "../d9"][choose.below(3)].to_owned(),
            };
            let _ = writeln!(text, "  - {entry}");
        }
        let components = choose.below(3);
        if components > 0 {
            text.push_str("components:\n");
        }
        for _ in 0..components {
            let target = choose.below(count);
            if has_kustomization[target] {
                edges[i].insert(target);
            }
            let _ = writeln!(text, "  - ../d{target}");
        }
        if choose.below(3) == 0 {
            let target = choose.below(count);
            let _ = write!(
                text,
                "patches:\n  - target:\n      kind: ConfigMap\n      name: cm-{target}\n    \
                 patch: |\n      - op: add\n        path: /data/patched\n        value: d{i}\n"
            );
        }
        files.push((format!("{dir}/kustomization.yaml"), text));
    }
    Tree { files, edges }
}

/// A Flux Kustomization building `k/d{target}`.
fn flux_kustomization(name: &str, target: usize, target_namespace: bool) -> String {
    let mut text = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  \
         name: {name}\n  namespace: flux-system\nspec:\n  interval: 10m\n  path: ./k/d{target}\n  \
         prune: true\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
    );
    if target_namespace {
        text.push_str("  targetNamespace: team-a\n");
    }
    text
}

pub fn check(data: &[u8]) {
    check_tree(&generate(data));
}

fn check_tree(tree: &Tree) {
    let sources = tree
        .files
        .iter()
        .map(|(rel, text)| Source {
            path: rel.clone(),
            rel: PathBuf::from(rel),
            text: text.clone(),
            reported: true,
        })
        .collect();
    let inventory = Inventory::from_sources(None, sources);
    let builds = fluxfence::build::build(&inventory);
    let named: BTreeSet<usize> = builds
        .problems
        .iter()
        .filter_map(|p| cycle_directory(&p.message))
        .collect();
    let on_cycles = tree.directories_on_cycles();
    for dir in &named {
        assert!(
            on_cycles.contains(dir),
            "k/d{dir} is reported as a cycle but is on none; edges {:?}",
            tree.edges
        );
    }
    for cycle in tree.cycles_reachable_from(0) {
        assert!(
            cycle.iter().any(|d| named.contains(d)),
            "the cycle {cycle:?} is not reported; edges {:?}, problems {:?}",
            tree.edges,
            builds.problems
        );
    }
}

/// `k/dN` of a "kustomization cycle: k/dN includes itself" error.
fn cycle_directory(message: &str) -> Option<usize> {
    let rest = message.strip_prefix("kustomization cycle: k/d")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Tree {
    /// Directories from which a directory reaches itself again.
    fn directories_on_cycles(&self) -> BTreeSet<usize> {
        (0..self.edges.len())
            .filter(|&d| self.reachable_from(d).contains(&d))
            .collect()
    }

    /// Directories reachable in one step or more from `start`.
    fn reachable_from(&self, start: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.edges[start].iter().copied().collect();
        while let Some(d) = todo.pop() {
            if seen.insert(d) {
                todo.extend(self.edges[d].iter().copied());
            }
        }
        seen
    }

    /// Every simple cycle (as its directories) that a walk from `start` enters.
    fn cycles_reachable_from(&self, start: usize) -> Vec<Vec<usize>> {
        let mut reachable = self.reachable_from(start);
        reachable.insert(start);
        let mut cycles = Vec::new();
        for &first in &reachable {
            // Each cycle once: from its smallest directory.
            self.walk(first, first, &mut vec![first], &mut cycles);
        }
        cycles
    }

    fn walk(&self, first: usize, at: usize, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        for &next in &self.edges[at] {
            if next == first {
                out.push(path.clone());
            } else if next > first && !path.contains(&next) {
                path.push(next);
                self.walk(first, next, path, out);
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept input `testdata/fuzz/kustomize_build/cycle-d0-d1`, choice by choice.
    const CYCLE: [u8; 19] = [1, 1, 0, 1, 1, 1, 1, 1, 2, 0, 1, 1, 1, 1, 1, 0, 2, 0, 1];

    #[test]
    fn choices_make_the_tree_they_say() {
        let tree = generate(&CYCLE);
        assert_eq!(tree.edges, [BTreeSet::from([1]), BTreeSet::from([0])]);
        let kustomization = |dir: &str| {
            tree.files
                .iter()
                .find(|(rel, _)| *rel == format!("{dir}/kustomization.yaml"))
                .map(|(_, text)| text.clone())
        };
        assert!(kustomization("k/d0").is_some_and(|t| t.contains("  - ../d1\n")));
        assert!(kustomization("k/d1").is_some_and(|t| t.contains("  - ../d0\n")));
        // No bytes: one directory, its kustomization listing nothing.
        assert_eq!(generate(&[]).edges, [BTreeSet::new()]);
    }

    #[test]
    fn cycles_are_found_from_where_a_build_starts() {
        let tree = |edges: &[&[usize]]| Tree {
            files: Vec::new(),
            edges: edges.iter().map(|e| e.iter().copied().collect()).collect(),
        };
        // d0 → d1 → d2 → d1, and d3 → d3 unreachable from d0.
        let t = tree(&[&[1], &[2], &[1], &[3]]);
        assert_eq!(t.cycles_reachable_from(0), [vec![1, 2]]);
        assert_eq!(t.directories_on_cycles(), BTreeSet::from([1, 2, 3]));
        // A diamond is no cycle.
        let diamond = tree(&[&[1, 2], &[3], &[3], &[]]);
        assert!(diamond.cycles_reachable_from(0).is_empty());
        assert!(diamond.directories_on_cycles().is_empty());
        assert_eq!(
            cycle_directory("kustomization cycle: k/d2 includes itself"),
            Some(2)
        );
        assert_eq!(cycle_directory("resource `../d9` is missing"), None);
    }

    #[test]
    #[should_panic(expected = "is not reported")]
    fn an_unreported_cycle_fails() {
        // The oracle itself, on a build that cannot see the cycle: fed a tree whose cycle
        // the build is never asked about, it must complain.
        let tree = Tree {
            files: vec![(
                "clusters/root.yaml".into(),
                flux_kustomization("root", 0, false),
            )],
            edges: vec![BTreeSet::from([0])],
        };
        check_tree(&tree);
    }
}
