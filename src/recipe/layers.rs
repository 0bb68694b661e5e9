//! Building one recipe tree from its layers: `extends` bases (deep-merged, child wins), the file
//! itself, then `--set key.path=value` overrides from the command line.

use std::path::{Path, PathBuf};

use super::diagnostics::Diagnostics;
use super::node::{parse, parse_inline, Key, Node, Origin, Value};

/// Keys that belong to one file and are not inherited by files that extend it.
const NOT_INHERITED: &[&str] = &["extends", "template"];

/// Reads `path` and everything it extends into one tree; problems go to `diags`.
pub fn load_with_extends(path: &Path, diags: &Diagnostics) -> Option<Node> {
    load(path, &mut Vec::new(), None, diags)
}

fn load(
    path: &Path,
    chain: &mut Vec<PathBuf>,
    referrer: Option<&Node>,
    diags: &Diagnostics,
) -> Option<Node> {
    let report_origin = referrer
        .map(|n| n.origin.clone())
        .unwrap_or_else(|| Origin::new(path, 1));
    let text = match crate::recipe::node::read_document(path) {
        Ok(text) => text,
        Err(e) => {
            let key = if referrer.is_some() { "extends" } else { "" };
            diags.error(
                &report_origin,
                key,
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(at) = chain.iter().position(|p| *p == canonical) {
        let cycle: Vec<String> = chain[at..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| p.display().to_string())
            .collect();
        diags.error(
            &report_origin,
            "extends",
            format!("cyclic extends: {}", cycle.join(" -> ")),
        );
        return None;
    }
    let mut node = match parse(&text, path) {
        Ok(node) => node,
        Err(e) => {
            diags.error(&e.origin, "", format!("YAML syntax error: {}", e.message));
            return None;
        }
    };
    if !matches!(node.value, Value::Map(_)) {
        diags.error(
            &node.origin,
            "",
            format!("a recipe must be a mapping of keys, found {}", node.kind()),
        );
        return None;
    }

    let Some(extends) = node.remove("extends") else {
        return Some(node);
    };
    let bases: Vec<&Node> = match &extends.value {
        Value::Str(_) => vec![&extends],
        Value::Seq(items) => items.iter().collect(),
        _ => {
            diags.error(
                &extends.origin,
                "extends",
                format!(
                    "expected a path or a list of paths, found {}",
                    extends.kind()
                ),
            );
            return Some(node);
        }
    };
    chain.push(canonical);
    let mut merged: Option<Node> = None;
    for base in bases {
        let Some(base_path) = base.as_str().map(|s| base.origin.base_dir().join(s)) else {
            diags.error(
                &base.origin,
                "extends",
                format!("expected a path, found {}", base.kind()),
            );
            continue;
        };
        let Some(mut base_tree) = load(&base_path, chain, Some(base), diags) else {
            continue;
        };
        for key in NOT_INHERITED {
            base_tree.remove(key);
        }
        merged = Some(match merged {
            None => base_tree,
            Some(mut acc) => {
                merge_into(&mut acc, base_tree);
                acc
            }
        });
    }
    chain.pop();
    Some(match merged {
        None => node,
        Some(mut acc) => {
            // The file's own top-level origin stays, so errors about missing keys point at it.
            acc.origin = node.origin.clone();
            merge_into(&mut acc, node);
            acc
        }
    })
}

/// Deep merge: mappings merge key by key, anything else in `overlay` replaces what `base` had.
pub fn merge_into(base: &mut Node, overlay: Node) {
    match (&mut base.value, overlay.value) {
        (Value::Map(base_entries), Value::Map(overlay_entries)) => {
            for (key, value) in overlay_entries {
                match base_entries.iter_mut().find(|(k, _)| k.name == key.name) {
                    Some((base_key, base_value)) => {
                        *base_key = key;
                        merge_into(base_value, value);
                    }
                    None => base_entries.push((key, value)),
                }
            }
        }
        (_, value) => {
            base.value = value;
            base.origin = overlay.origin;
            base.tag = overlay.tag;
        }
    }
}

/// Splits `key.path=value`.
pub fn split_override(flag: &str) -> Result<(Vec<String>, &str), String> {
    let (path, value) = flag.split_once('=').ok_or("expected key.path=value")?;
    let keys: Vec<String> = path.trim().split('.').map(str::to_string).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("malformed key path {path:?}"));
    }
    Ok((keys, value))
}

/// Applies `--set` overrides in order. Unknown keys are not judged here: the recipe reader
/// reports them like any other, with the flag as their origin.
pub fn apply_overrides(tree: &mut Node, flags: &[String], diags: &Diagnostics) {
    for (i, flag) in flags.iter().enumerate() {
        let origin = Origin::command_line(flag, i + 1);
        let (keys, text) = match split_override(flag) {
            Ok(parts) => parts,
            Err(message) => {
                diags.error(&origin, "", message);
                continue;
            }
        };
        let value = match parse_inline(text, &origin) {
            Ok(value) => value,
            Err(e) => {
                diags.error(
                    &origin,
                    &keys.join("."),
                    format!("cannot parse value {text:?}: {}", e.message),
                );
                continue;
            }
        };
        if let Err(message) = set_path(tree, &keys, value, &origin) {
            diags.error(&origin, &keys.join("."), message);
        }
    }
}

fn set_path(tree: &mut Node, keys: &[String], value: Node, origin: &Origin) -> Result<(), String> {
    let mut node = tree;
    for (depth, key) in keys.iter().enumerate() {
        if node.value == Value::Null {
            node.value = Value::Map(Vec::new());
        }
        let kind = node.kind();
        let Value::Map(entries) = &mut node.value else {
            return Err(format!(
                "`{}` is {kind}, not a mapping, so it has no key `{key}`",
                keys[..depth].join(".")
            ));
        };
        let at = match entries.iter().position(|(k, _)| k.name == *key) {
            Some(at) => at,
            None => {
                let empty = Node::new(Value::Null, origin.clone());
                entries.push((
                    Key {
                        name: key.clone(),
                        origin: origin.clone(),
                    },
                    empty,
                ));
                entries.len() - 1
            }
        };
        node = &mut entries[at].1;
    }
    merge_into(node, value);
    Ok(())
}
