//! The shape of the source tree: the library's top-level modules import one another
//! without a cycle (each from layers below it only), and no source file outgrows a
//! reader. Read from `src/` as text, the way a newcomer meets it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines.
const FILE_MAX_LINES: usize = 950;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`src/actors/flow.rs` → `actors`), or `None`
/// for the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The top-level modules `text` imports through `crate::` (its test code left out:
/// tests may reach anywhere).
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `crate::{a::X, b}`: every path in the braces.
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for name in names {
            let module: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !module.is_empty() {
                found.insert(module);
            }
        }
    }
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        // `tests.rs` files are test modules (`#[cfg(test)] mod tests;`).
        let test_module = file.file_name().is_some_and(|n| n == "tests.rs");
        let Some(module) = module_of(&file).filter(|_| !test_module) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A cycle through `graph`, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The layers of docs/architecture.md, from the bottom: a module imports from its own
/// layer or those below it, never from one above.
const LAYERS: &[&[&str]] = &[
    &["domain", "secrets"],
    &["store"],
    &["outbound", "intermediary"],
    &["actors"],
    &["tenancy", "auth", "intake", "config"],
    &["kafka", "http"],
    &["seed", "simulator", "server", "bench"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    for (module, deps) in &graph {
        let own = layer_of(module)
            .unwrap_or_else(|| panic!("{module} has no layer: add it to LAYERS and the docs"));
        for dep in deps {
            let theirs = layer_of(dep).unwrap_or(0);
            assert!(
                theirs <= own,
                "{module} (layer {}) imports {dep} (layer {}), a layer above it",
                own + 1,
                theirs + 1
            );
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

/// The checker itself finds a cycle when there is one.
#[test]
fn a_cycle_is_found_when_there_is_one() {
    let edge = |a: &str, b: &str| (a.to_string(), BTreeSet::from([b.to_string()]));
    let cyclic = BTreeMap::from([edge("a", "b"), edge("b", "c"), edge("c", "a")]);
    assert_eq!(find_cycle(&cyclic).unwrap(), ["a", "b", "c", "a"]);
    let acyclic = BTreeMap::from([edge("a", "b"), edge("b", "c"), edge("c", "d")]);
    assert_eq!(find_cycle(&acyclic), None);
    assert_eq!(
        imports("use crate::{auth::Caller, domain::time};\nlet x = crate::store::open;\n#[cfg(test)]\nuse crate::http;"),
        BTreeSet::from(["auth".to_string(), "domain".to_string(), "store".to_string()])
    );
}

#[test]
fn no_source_file_outgrows_a_reader() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        &mut files,
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > FILE_MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {FILE_MAX_LINES} lines: {long:?}");
}
