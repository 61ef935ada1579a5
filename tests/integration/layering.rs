//! The crate's layering, checked on its source: no two top-level modules import each other
//! through any path (gateway → routing → actors → storage, cluster → routing), and inside
//! `actors`, `cluster`, `gateway`, `registry` and `routing` no two sibling modules do. An import
//! is any `crate::`, `super::` or `self::` path in non-test code; a child using its parent is
//! not a cycle. Test modules (`tests.rs`, `tests/`, an inline `mod tests`) are left out: what
//! tests import does not shape the architecture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`actors::entity::route`) → its source, without test code.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ reads") {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if name != "tests" {
                    dirs.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "tests.rs" || name == "main.rs" {
                continue;
            }
            let relative = path
                .strip_prefix(&root)
                .expect("under src/")
                .with_extension("");
            let module = (relative.iter())
                .map(|part| part.to_string_lossy().into_owned())
                .filter(|part| part != "lib")
                .collect::<Vec<_>>()
                .join("::");
            let source = std::fs::read_to_string(&path).expect("a source file reads");
            let code = match source.find("#[cfg(test)]\nmod tests {") {
                Some(at) => source[..at].to_owned(),
                None => source,
            };
            found.insert(module, code);
        }
    }
    found
}

/// The paths one module's code names, as segments (`crate::routing::Directory` → `[crate,
/// routing, Directory]`), brace groups expanded one level.
fn paths(code: &str) -> Vec<Vec<String>> {
    let pattern = regex::Regex::new(r"\b(?:crate|super|self)(?:::\w+)+(?:::\{([^;]*?)\})?")
        .expect("a valid pattern");
    let mut found = Vec::new();
    for capture in pattern.captures_iter(code) {
        let whole = capture.get(0).expect("a match").as_str();
        let head: Vec<String> = (whole.split("::{").next().unwrap_or(whole).split("::"))
            .map(str::to_owned)
            .collect();
        found.push(head.clone());
        for item in capture.get(1).map_or("", |m| m.as_str()).split(',') {
            let item = item.trim().trim_start_matches('{');
            let segments = item.split("::").map(|s| s.split_whitespace().next());
            let tail: Vec<String> = segments.map_while(|s| s.map(str::to_owned)).collect();
            if !tail.is_empty() && tail[0] != "self" {
                found.push(head.iter().cloned().chain(tail).collect());
            }
        }
    }
    found
}

/// The module a path names, from the module `from`: the longest known prefix.
fn target(modules: &BTreeMap<String, String>, from: &str, path: &[String]) -> Option<String> {
    let mut base: Vec<&str> = match from {
        "" => Vec::new(),
        from => from.split("::").collect(),
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => base.clear(),
        Some("self") => {}
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    if rest.first().is_some_and(|s| s == "crate" || s == "self") {
        rest = &rest[1..];
    }
    let full: Vec<&str> = base
        .into_iter()
        .chain(rest.iter().map(String::as_str))
        .collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Edges between modules of one level: `group` maps a module to its group at that level.
fn cycles(
    edges: &BTreeSet<(String, String)>,
    group: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges {
        if let (Some(a), Some(b)) = (group(from), group(to)) {
            if a != b {
                graph.entry(a).or_default().insert(b);
            }
        }
    }
    let reaches = |from: &str, to: &str| {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_owned()]);
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if seen.insert(node.clone()) {
                stack.extend(graph.get(&node).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut found = Vec::new();
    for (from, tos) in &graph {
        for to in tos.iter().filter(|to| reaches(to, from)) {
            found.push(format!("{from} -> {to} -> ... -> {from}"));
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    let mut edges = BTreeSet::new();
    for (module, code) in &modules {
        for path in paths(code) {
            let Some(to) = target(&modules, module, &path) else {
                continue;
            };
            let ancestor = to.is_empty() || module.starts_with(&format!("{to}::"));
            if to != *module && !ancestor {
                edges.insert((module.clone(), to));
            }
        }
    }
    assert!(
        edges.contains(&("gateway".to_owned(), "routing".to_owned())),
        "the check sees imports"
    );
    let top = |m: &str| m.split("::").next().map(str::to_owned);
    let mut found = cycles(&edges, top);
    for parent in ["actors", "cluster", "gateway", "registry", "routing"] {
        let child = |m: &str| {
            let mut parts = m.split("::");
            (parts.next() == Some(parent)).then(|| parts.next().map(str::to_owned))?
        };
        found.extend(
            cycles(&edges, child)
                .into_iter()
                .map(|c| format!("{parent}: {c}")),
        );
    }
    assert!(found.is_empty(), "module cycles: {found:#?}");
}
