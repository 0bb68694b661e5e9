//! Where in build-data's small YAML files (the enrollment, the corrections) a problem is, as the
//! `:LINE` that follows the file's name in an error.

use std::path::Path;

use crate::recipe::node::{self, Value};

/// `:LINE` of `key` in the mapping under `parent` (the top level when `None`), read with the
/// recipe reader's line positions; empty when the text does not parse or has no such key.
pub fn key_line(text: &str, file: &Path, parent: Option<&str>, key: &str) -> String {
    let Ok(root) = node::parse(text, file) else {
        return String::new();
    };
    let map = match parent {
        Some(parent) => root.get(parent),
        None => Some(&root),
    };
    match map.map(|m| &m.value) {
        Some(Value::Map(entries)) => entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| format!(":{}", k.origin.line))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A serde_yaml error as `FILE:LINE: message`.
pub fn syntax_error(file: &Path, e: &serde_yaml::Error) -> String {
    let place = e
        .location()
        .map(|l| format!(":{}", l.line()))
        .unwrap_or_default();
    format!("{}{place}: {e}", file.display())
}
