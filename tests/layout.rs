//! The source tree's module graph: no file under src/ reaches itself through `crate::` and
//! `super::` paths (so modules layer: models and data below train, train below the pipeline,
//! the pipeline below the CLI), and nothing but `main.rs` and the CLI layer (`commands/`)
//! imports the CLI layer. Test modules (`#[cfg(test)]`) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::repo;

/// A module: its path below the crate root (`["train", "lm"]`), and whether it is a directory
/// module (`mod.rs`, `lib.rs`, `main.rs`), whose `super` is its parent.
type Module = Vec<String>;

fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(module, text);
        }
    }
    out
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

/// Every path a file names from `crate::`, `super::` or `self::`, and every `use` of a child
/// module (`use status::State`, as `self::status::State`), with `{a, b::c}` groups expanded.
fn paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let (word, end) = ident_at(&chars, i);
        let anchored = ["crate", "super", "self"].contains(&word.as_str());
        if boundary && anchored && chars[end..].starts_with(&[':', ':']) {
            i = read_path(&chars, i, Vec::new(), &mut out);
        } else if boundary && word == "use" && chars.get(end).is_some_and(|c| c.is_whitespace()) {
            let start = end + 1;
            let (first, _) = ident_at(&chars, start);
            i = if ["crate", "super", "self"].contains(&first.as_str()) {
                start
            } else {
                read_path(&chars, start, vec!["self".to_string()], &mut out)
            };
        } else {
            i = end.max(i + 1);
        }
    }
    out
}

/// Reads `a::b::{c, d::e}` at `i` onto `prefix`, pushing each full path; returns the end.
fn read_path(
    chars: &[char],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return i + 1;
                }
                let next = read_path(chars, i, prefix.clone(), out);
                if next <= i {
                    return i + 1;
                }
                i = next;
            }
        }
        let (word, end) = ident_at(chars, i);
        if word.is_empty() {
            out.push(prefix);
            return i;
        }
        prefix.push(word);
        i = end;
        if chars[i..].starts_with(&[':', ':']) {
            i += 2;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

/// The module a path lands in: the longest prefix that is a module.
fn resolve(from: &Module, path: &[String], known: &BTreeMap<Module, String>) -> Option<Module> {
    let mut absolute: Module = Vec::new();
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "self") {
        absolute = from.clone();
        rest = &rest[1..];
    } else if rest.first().is_some_and(|s| s == "super") {
        // `super` of `a::b` (a file or a directory module alike) is `a`.
        absolute = from[..from.len().saturating_sub(1)].to_vec();
        rest = &rest[1..];
        while rest.first().is_some_and(|s| s == "super") {
            absolute.pop();
            rest = &rest[1..];
        }
    } else {
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().cloned());
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|m| known.contains_key(m))
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(&repo().join("src"));
    let mut edges = BTreeMap::new();
    for (module, text) in &known {
        let targets: BTreeSet<Module> = paths(&code(text))
            .iter()
            .filter_map(|p| resolve(module, p, &known))
            .filter(|t| t != module)
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(start: &Module, edges: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in &edges[&node] {
            if next == start {
                return Some(path);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_itself_through_others_and_only_the_cli_imports_the_cli() {
    let edges = graph();
    assert!(
        edges.len() > 100 && edges[&vec!["train".to_string(), "lm".to_string()]].len() > 10,
        "the scan found the tree: {} modules",
        edges.len()
    );
    let cycles: Vec<String> = edges
        .keys()
        .filter_map(|m| cycle_from(m, &edges))
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    let cli = |m: &Module| m.first().is_some_and(|s| s == "commands" || s == "main");
    let upward: Vec<String> = edges
        .iter()
        .filter(|(m, targets)| {
            !cli(m)
                && targets
                    .iter()
                    .any(|t| t.first().is_some_and(|s| s == "commands"))
        })
        .map(|(m, _)| name(m))
        .collect();
    assert!(
        upward.is_empty(),
        "modules below the CLI that import it: {upward:?}"
    );
}

#[test]
fn the_scan_sees_a_cycle_when_there_is_one() {
    let text = "use super::b::{self, X};\nfn f() { crate::a::g(); }\nuse c::Y; // use b::Z;\n";
    let known: BTreeMap<Module, String> = [("a", ""), ("b", ""), ("a/c", "")]
        .iter()
        .map(|(m, t)| (m.split('/').map(String::from).collect(), t.to_string()))
        .collect();
    let from = vec!["a".to_string()];
    let found: Vec<Module> = paths(&code(text))
        .iter()
        .filter_map(|p| resolve(&from, p, &known))
        .collect();
    let a_c = vec!["a".to_string(), "c".to_string()];
    assert_eq!(
        found,
        [
            vec!["b".to_string()],
            vec!["b".to_string()],
            vec!["a".to_string()],
            a_c
        ]
    );
    let edges = BTreeMap::from([
        (
            vec!["a".to_string()],
            BTreeSet::from([vec!["b".to_string()]]),
        ),
        (
            vec!["b".to_string()],
            BTreeSet::from([vec!["a".to_string()]]),
        ),
    ]);
    assert!(cycle_from(&vec!["a".to_string()], &edges).is_some());
}
