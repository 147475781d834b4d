//! The daemon's modules stay in layers without cycles (STYLE.md, habit 13): foundations →
//! options → subsystems → HTTP API → wiring. A module may import modules of its own layer or
//! of a lower one, and the modules, taken one by one, import each other in no cycle.
//!
//! The test reads the source files under `src/`, maps each file to its module
//! (`src/api/kv.rs` is `api::kv`, `src/api/mod.rs` is `api`) and its layer (its directory;
//! the files directly in `src/` are the wiring), and collects every `crate::...` and
//! `super::...` path it names, grouped imports (`crate::api::{kv, shared}`) included. A path
//! names the longest module it starts with (`crate::api::shared::ApiError` is `api::shared`;
//! `crate::run` is the crate root, `lib.rs`). Comments count too: a doc link or a comment that
//! names a module of a higher layer is the same dependency in prose, and the way a cycle
//! starts.
//!
//! `CHATTERD_LAYERS_SRC=DIR` checks another source tree instead (an older commit's, to see
//! what it reports there).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The layers, lowest first, by the directory their files are in under `src/`.
const LAYERS: [(&str, &str); 4] = [
    ("foundation", "foundations"),
    ("options", "options"),
    ("subsystems", "subsystems"),
    ("api", "HTTP API"),
];

/// The wiring: the files directly in `src/`, the top layer.
const WIRING: [&str; 4] = ["daemon.rs", "demo.rs", "lib.rs", "main.rs"];

/// The wiring's rank, above every layer of [`LAYERS`].
const WIRING_RANK: usize = LAYERS.len();

/// One module: its path (`api::kv`; empty for the crate root) and its layer's rank.
#[derive(Debug, Clone)]
struct Module {
    path: Vec<String>,
    file: String,
    rank: Option<usize>,
}

impl Module {
    fn name(&self) -> String {
        if self.path.is_empty() {
            "lib".to_owned()
        } else {
            self.path.join("::")
        }
    }
}

/// An import of one module by another, where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    at: String,
    text: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imports {} ({}: `{}`)",
            self.from, self.to, self.at, self.text
        )
    }
}

fn rank_name(rank: usize) -> &'static str {
    LAYERS.get(rank).map_or("wiring", |(_, name)| *name)
}

/// The module of a file, by its path relative to `src/` (with `/` separators).
fn module_of(relative: &str) -> Module {
    let without_ext = relative.strip_suffix(".rs").unwrap_or(relative);
    let mut path: Vec<String> = without_ext.split('/').map(str::to_owned).collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    if path == ["lib"] {
        path.clear();
    }
    let rank = if relative.contains('/') {
        let dir = relative.split('/').next().unwrap_or("");
        LAYERS.iter().position(|(d, _)| *d == dir)
    } else if WIRING.contains(&relative) {
        Some(WIRING_RANK)
    } else {
        None
    };
    Module {
        path,
        file: format!("src/{relative}"),
        rank,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths of a use tree starting at `text` (after `crate::` or `super::`), each as its
/// segments: `api::{kv, shared::ApiError}` gives `api::kv` and `api::shared::ApiError`.
fn use_tree(text: &[char], mut at: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut segments = prefix.to_vec();
    loop {
        while at < text.len() && text[at].is_whitespace() {
            at += 1;
        }
        if at < text.len() && text[at] == '{' {
            at += 1;
            loop {
                while at < text.len() && (text[at].is_whitespace() || text[at] == ',') {
                    at += 1;
                }
                if at >= text.len() || text[at] == '}' {
                    return at + 1;
                }
                at = use_tree(text, at, &segments, out);
                // Skip an `as NAME` to the next item of the group.
                let mut depth = 0usize;
                while at < text.len() {
                    match text[at] {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => break,
                        _ => {}
                    }
                    at += 1;
                }
            }
        }
        let start = at;
        while at < text.len() && is_ident(text[at]) {
            at += 1;
        }
        if at == start {
            out.push(segments);
            return at;
        }
        segments.push(text[start..at].iter().collect());
        if text.get(at) == Some(&':') && text.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            out.push(segments);
            return at;
        }
    }
}

/// The module a path names: the longest known module it starts with, else the crate root.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
        .unwrap_or_default()
}

/// Every module a source file names, with the line and the path's text.
fn imports(
    module: &Module,
    source: &str,
    modules: &BTreeSet<Vec<String>>,
) -> Vec<(Vec<String>, usize, String)> {
    let text: Vec<char> = source.chars().collect();
    // An inline module (`mod tests {`) runs to the end of the file in this crate: `super::`
    // inside it is the file's own module.
    let inline_at = source
        .lines()
        .scan(0usize, |offset, line| {
            let start = *offset;
            *offset += line.chars().count() + 1;
            Some((start, line))
        })
        .find(|(_, line)| {
            let l = line.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.starts_with("mod ") && l.trim_end().ends_with('{')
        })
        .map(|(start, line)| {
            let name = line
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("mod ");
            (start, name.trim_end_matches('{').trim().to_owned())
        });
    let line_of = |at: usize| text[..at].iter().filter(|&&c| c == '\n').count() + 1;
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let boundary = at == 0 || !(is_ident(text[at - 1]) || text[at - 1] == ':');
        let rest = &text[at..];
        let starts = |word: &str| {
            let w: Vec<char> = word.chars().collect();
            rest.len() > w.len() && rest[..w.len()] == w[..]
        };
        if boundary && (starts("crate::") || starts("super::")) {
            let begin = at;
            let mut base: Vec<String> = Vec::new();
            if starts("crate::") {
                at += "crate::".len();
            } else {
                base = module.path.clone();
                if let Some((inline_start, name)) = &inline_at {
                    if begin >= *inline_start {
                        base.push(name.clone());
                    }
                }
                // A `mod.rs` is its directory's module: its `super` is the parent directory.
                while text[at..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                    base.pop();
                    at += "super::".len();
                }
            }
            let mut paths = Vec::new();
            at = use_tree(&text, at, &base, &mut paths);
            let quoted: String = text[begin..at.min(text.len())].iter().collect();
            let quoted = quoted.split_whitespace().collect::<Vec<_>>().join(" ");
            for path in paths {
                found.push((resolve(&path, modules), line_of(begin), quoted.clone()));
            }
        } else {
            at += 1;
        }
    }
    found
}

/// What is wrong with the layering of these files (paths relative to `src/`, and their text):
/// files in no layer, imports of a higher layer, cycles. Empty when all is well.
fn problems(files: &[(String, String)]) -> (Vec<String>, Vec<Edge>) {
    let modules: Vec<Module> = files.iter().map(|(path, _)| module_of(path)).collect();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let rank: BTreeMap<String, Option<usize>> =
        modules.iter().map(|m| (m.name(), m.rank)).collect();
    let mut problems = Vec::new();
    for module in modules.iter().filter(|m| m.rank.is_none()) {
        problems.push(format!(
            "{} ({}) is in no layer: put it in one of {} or make it part of the wiring ({})",
            module.name(),
            module.file,
            LAYERS.map(|(dir, _)| format!("src/{dir}/")).join(", "),
            WIRING.join(", ")
        ));
    }
    let mut edges = BTreeSet::new();
    for (module, (_, source)) in modules.iter().zip(files) {
        for (target, line, text) in imports(module, source, &known) {
            if target == module.path {
                continue;
            }
            let target = Module {
                path: target,
                file: String::new(),
                rank: None,
            };
            edges.insert(Edge {
                from: module.name(),
                to: target.name(),
                at: format!("{}:{line}", module.file),
                text,
            });
        }
    }
    for edge in &edges {
        if let (Some(Some(from)), Some(Some(to))) = (rank.get(&edge.from), rank.get(&edge.to)) {
            if to > from {
                problems.push(format!(
                    "{edge}: a module of the {} layer imports one of the {} layer above it",
                    rank_name(*from),
                    rank_name(*to)
                ));
            }
        }
    }
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for edge in &edges {
        graph.entry(&edge.from).or_default().insert(&edge.to);
    }
    for (cycle, component) in cycles(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let edge = edges
                    .iter()
                    .find(|e| e.from == pair[0] && e.to == pair[1])
                    .expect("an edge of the graph");
                format!("  {edge}")
            })
            .collect();
        problems.push(format!(
            "cycle: {}\n{}\n  (one cycle among the {} modules that reach each other: {})",
            cycle.join(" -> "),
            steps.join("\n"),
            component.len(),
            component.join(", ")
        ));
    }
    (problems, edges.into_iter().collect())
}

/// One cycle through each group of modules that reach each other (a strongly connected
/// component of more than one module), as a path that ends where it starts, with the group.
fn cycles(graph: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(*from).chain(to.iter().copied()))
        .collect();
    let reach: BTreeMap<&str, BTreeSet<&str>> =
        nodes.iter().map(|&n| (n, reachable(graph, n))).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for &start in &nodes {
        if done.contains(start) || !reach[start].contains(start) {
            continue;
        }
        let component: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .filter(|n| reach[start].contains(n) && reach[n].contains(start))
            .collect();
        done.extend(component.iter().copied());
        // The shortest way back to `start`, by a breadth-first search inside the component.
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(node) = queue.pop_front() {
            for &next in graph.get(node).into_iter().flatten() {
                if !component.contains(next) {
                    continue;
                }
                if next == start {
                    let mut path = vec![start.to_owned()];
                    let mut at = node;
                    while at != start {
                        path.push(at.to_owned());
                        at = previous[at];
                    }
                    path.push(start.to_owned());
                    path.reverse();
                    found.push((path, component.iter().map(|m| (*m).to_owned()).collect()));
                    break 'search;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
    }
    found
}

/// The modules `start` imports, directly or through others.
fn reachable<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for &next in graph.get(node).into_iter().flatten() {
            if seen.insert(next) {
                stack.push(next);
            }
        }
    }
    seen
}

/// The `.rs` files under `dir`, relative to it, with their text.
fn read_sources(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap();
                let relative = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn the_daemon_is_layered_without_cycles() {
    let src = std::env::var_os("CHATTERD_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let files = read_sources(&src);
    let (problems, edges) = problems(&files);
    assert!(
        problems.is_empty(),
        "the modules of {} break the layering (foundations -> options -> subsystems -> HTTP \
         API -> wiring, no cycle):\n{}",
        src.display(),
        problems.join("\n")
    );
    // A reader that finds nothing passes vacuously: make sure it sees the imports it must.
    for (from, to) in [
        ("api::router", "api::shared"),
        ("daemon", "api::server"),
        ("subsystems::checks", "options::checks"),
        ("options::flags", "foundation::duration"),
    ] {
        assert!(
            edges.iter().any(|e| e.from == from && e.to == to),
            "{from} -> {to} not found among {} imports",
            edges.len()
        );
    }
}

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

#[test]
fn an_import_of_a_higher_layer_is_reported_with_where_it_is() {
    let files = sources(&[
        ("lib.rs", "pub mod foundation;\npub mod daemon;\n"),
        ("daemon.rs", "pub fn io_message() {}\n"),
        ("foundation/mod.rs", "pub mod process;\n"),
        (
            "foundation/process.rs",
            "fn run() {\n    let m = crate::daemon::io_message();\n}\n",
        ),
    ]);
    let (problems, _) = problems(&files);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "foundation::process imports daemon (src/foundation/process.rs:2: \
             `crate::daemon::io_message`): a module of the foundations layer imports one of \
             the wiring layer"
        ),
        "{}",
        problems[0]
    );
}

#[test]
fn a_cycle_inside_a_layer_is_reported_edge_by_edge() {
    let files = sources(&[
        ("options/mod.rs", "pub mod checks;\npub mod flags;\n"),
        (
            "options/flags.rs",
            "use crate::options::{checks::CheckSpec, values};\npub fn parse_seed() {}\n",
        ),
        (
            "options/checks.rs",
            "//! Seeds are parsed by [`super::flags::parse_seed`].\npub struct CheckSpec;\n",
        ),
        ("options/values.rs", "\n"),
    ]);
    let (problems, edges) = problems(&files);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("cycle: options::checks -> options::flags -> options::checks"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].contains("src/options/checks.rs:1"),
        "{}",
        problems[0]
    );
    // The group gives both of its modules.
    assert!(edges
        .iter()
        .any(|e| e.from == "options::flags" && e.to == "options::values"));
}

#[test]
fn super_in_a_test_module_is_the_file_itself() {
    let files = sources(&[
        ("api/mod.rs", "pub mod kv;\npub mod shared;\n"),
        ("api/shared.rs", "pub struct ApiError;\n"),
        (
            "api/kv.rs",
            "use super::shared::ApiError;\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
             use super::super::shared;\n}\n",
        ),
    ]);
    let (problems, edges) = problems(&files);
    assert!(problems.is_empty(), "{problems:#?}");
    let from_kv: Vec<&str> = edges
        .iter()
        .filter(|e| e.from == "api::kv")
        .map(|e| e.to.as_str())
        .collect();
    assert_eq!(from_kv, ["api::shared", "api::shared"]);
}

#[test]
fn a_file_outside_the_layers_is_reported() {
    let files = sources(&[("lib.rs", "pub mod http;\n"), ("http.rs", "\n")]);
    let (problems, _) = problems(&files);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("http (src/http.rs) is in no layer"));
}
