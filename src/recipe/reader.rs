//! Typed, error-collecting access to one mapping of a recipe (or card, or config). The code that
//! builds a config struct declares its keys by reading them; whatever else is in the mapping is an
//! unknown key, reported with the nearest declared one as a suggestion.

use std::cell::RefCell;
use std::path::PathBuf;

use super::diagnostics::{suggest, Diagnostics};
use super::node::{Node, Origin, Value};

/// Conversion of a node into a config value, with a message naming what was expected.
pub trait FromNode: Sized {
    fn from_node(node: &Node) -> Result<Self, String>;
}

fn expected(what: &str, node: &Node) -> String {
    match &node.value {
        Value::Str(s) => format!("expected {what}, found the string {s:?}"),
        _ => format!("expected {what}, found {}", node.kind()),
    }
}

impl FromNode for bool {
    fn from_node(node: &Node) -> Result<Self, String> {
        match node.value {
            Value::Bool(b) => Ok(b),
            _ => Err(expected("true or false", node)),
        }
    }
}

impl FromNode for f64 {
    fn from_node(node: &Node) -> Result<Self, String> {
        match node.value {
            Value::Float(x) if x.is_finite() => Ok(x),
            Value::Float(_) => Err("expected a finite number".into()),
            Value::Int(i) => Ok(i as f64),
            _ => Err(expected("a number", node)),
        }
    }
}

impl FromNode for i64 {
    fn from_node(node: &Node) -> Result<Self, String> {
        match node.value {
            Value::Int(i) => Ok(i),
            _ => Err(expected("an integer", node)),
        }
    }
}

impl FromNode for u64 {
    fn from_node(node: &Node) -> Result<Self, String> {
        match node.value {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            Value::Int(i) => Err(format!("expected a non-negative integer, found {i}")),
            _ => Err(expected("a non-negative integer", node)),
        }
    }
}

impl FromNode for usize {
    fn from_node(node: &Node) -> Result<Self, String> {
        u64::from_node(node).map(|v| v as usize)
    }
}

impl FromNode for String {
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            _ => Err(expected("a string", node)),
        }
    }
}

/// A path as written; resolved against the directory of the file that wrote it.
impl FromNode for PathBuf {
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Str(s) if !s.trim().is_empty() => {
                let path = PathBuf::from(s);
                if path.is_absolute() {
                    return Ok(path);
                }
                Ok(super::node::normalize(&node.origin.base_dir().join(path)))
            }
            Value::Str(_) => Err("expected a path, found an empty string".into()),
            _ => Err(expected("a path", node)),
        }
    }
}

impl<T: FromNode> FromNode for Vec<T> {
    fn from_node(node: &Node) -> Result<Self, String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_node(item).map_err(|e| format!("item {i}: {e}")))
                .collect(),
            _ => Err(expected("a list", node)),
        }
    }
}

impl<T: FromNode, const N: usize> FromNode for [T; N] {
    fn from_node(node: &Node) -> Result<Self, String> {
        let items: Vec<T> = Vec::from_node(node)?;
        let len = items.len();
        items
            .try_into()
            .map_err(|_| format!("expected a list of {N} items, found {len}"))
    }
}

/// Implements `FromNode` for a fieldless enum from its YAML spellings, suggesting the nearest.
#[macro_export]
macro_rules! yaml_enum {
    ($ty:ty { $($text:literal => $variant:expr),+ $(,)? }) => {
        impl $crate::recipe::reader::FromNode for $ty {
            fn from_node(node: &$crate::recipe::node::Node) -> Result<Self, String> {
                const CHOICES: &[&str] = &[$($text),+];
                let text = node.as_str().ok_or_else(|| format!("expected one of {}, found {}", CHOICES.join(", "), node.kind()))?;
                match text {
                    $($text => Ok($variant),)+
                    other => Err(match $crate::recipe::diagnostics::suggest(other, CHOICES.iter().copied()) {
                        Some(s) => format!("unknown value {other:?} (did you mean {s:?}?); choose one of {}", CHOICES.join(", ")),
                        None => format!("unknown value {other:?}; choose one of {}", CHOICES.join(", ")),
                    }),
                }
            }
        }
    };
}

/// One mapping being read. Keys read through it are "known"; `finish` reports the rest.
pub struct Section<'a> {
    node: Option<&'a Node>,
    path: String,
    /// Where to point errors about keys that are missing altogether.
    origin: Origin,
    diags: &'a Diagnostics,
    known: RefCell<Vec<&'static str>>,
}

impl<'a> Section<'a> {
    /// `node` must be a mapping (or null, read as empty); anything else is reported.
    pub fn new(node: &'a Node, path: &str, diags: &'a Diagnostics) -> Self {
        let usable = match node.value {
            Value::Map(_) => Some(node),
            Value::Null => None,
            _ => {
                diags.error(
                    &node.origin,
                    path,
                    format!("expected a mapping of keys, found {}", node.kind()),
                );
                None
            }
        };
        Section {
            node: usable,
            path: path.to_string(),
            origin: node.origin.clone(),
            diags,
            known: RefCell::new(Vec::new()),
        }
    }

    pub fn diags(&self) -> &'a Diagnostics {
        self.diags
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw child node, marking the key known.
    pub fn node(&self, key: &'static str) -> Option<&'a Node> {
        self.known.borrow_mut().push(key);
        self.node
            .and_then(|n| n.get(key))
            .filter(|n| n.value != Value::Null)
    }

    /// The origin of `key` if present, else of this section.
    pub fn origin_of(&self, key: &str) -> Origin {
        self.node
            .and_then(|n| n.get(key))
            .map(|n| n.origin.clone())
            .unwrap_or_else(|| self.origin.clone())
    }

    pub fn has(&self, key: &'static str) -> bool {
        self.node(key).is_some()
    }

    pub fn opt<T: FromNode>(&self, key: &'static str) -> Option<T> {
        let node = self.node(key)?;
        match T::from_node(node) {
            Ok(v) => Some(v),
            Err(message) => {
                self.diags.error(&node.origin, &self.key_path(key), message);
                None
            }
        }
    }

    /// A key that has a default.
    pub fn or<T: FromNode>(&self, key: &'static str, default: T) -> T {
        self.opt(key).unwrap_or(default)
    }

    /// A key that must be present (missing: an error pointing at this section).
    pub fn req<T: FromNode>(&self, key: &'static str) -> Option<T> {
        if self.node(key).is_none() {
            self.diags
                .error(&self.origin, &self.key_path(key), "required key is missing");
            return None;
        }
        self.opt(key)
    }

    /// A nested mapping (an absent one reads as empty, so its keys take their defaults).
    pub fn section(&self, key: &'static str) -> Section<'a> {
        let path = self.key_path(key);
        match self.node(key) {
            Some(node) => Section::new(node, &path, self.diags),
            None => Section {
                node: None,
                path,
                origin: self.origin.clone(),
                diags: self.diags,
                known: RefCell::new(Vec::new()),
            },
        }
    }

    /// Reports an error at `key` unless `ok`.
    pub fn check(&self, ok: bool, key: &str, message: impl Into<String>) -> bool {
        if !ok {
            self.diags
                .error(&self.origin_of(key), &self.key_path(key), message);
        }
        ok
    }

    /// Number checks used across recipes.
    pub fn positive(&self, key: &'static str, value: f64) -> f64 {
        self.check(
            value > 0.0,
            key,
            format!("must be greater than 0, found {value}"),
        );
        value
    }

    pub fn at_least(&self, key: &'static str, value: usize, min: usize) -> usize {
        self.check(
            value >= min,
            key,
            format!("must be at least {min}, found {value}"),
        );
        value
    }

    pub fn in_range(&self, key: &'static str, value: f64, low: f64, high: f64) -> f64 {
        self.check(
            (low..=high).contains(&value),
            key,
            format!("must be between {low} and {high}, found {value}"),
        );
        value
    }

    /// Reports every key of the mapping that no reader asked for.
    pub fn finish(&self) {
        let Some(Node {
            value: Value::Map(entries),
            ..
        }) = self.node
        else {
            return;
        };
        let mut known = self.known.borrow().clone();
        known.sort_unstable();
        known.dedup();
        for (key, _) in entries {
            if known.contains(&key.name.as_str()) {
                continue;
            }
            let message = match suggest(&key.name, known.iter().copied()) {
                Some(s) => format!("unknown key (did you mean `{s}`?)"),
                None => format!("unknown key; valid keys here: {}", known.join(", ")),
            };
            self.diags
                .error(&key.origin, &self.key_path(&key.name), message);
        }
    }
}
