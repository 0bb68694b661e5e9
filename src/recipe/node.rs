//! A YAML document as a tree whose every node remembers the file and line it came from, so that
//! recipe errors can name them even after `extends` merging and `--set` overrides.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Where a node was written: a file and a 1-based line, or a `--set` flag on the command line
/// (then `file` holds the flag's text and `line` its position among the `--set` flags).
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub command_line: bool,
}

impl Origin {
    pub fn new(file: &Path, line: usize) -> Self {
        Origin {
            file: Arc::new(file.to_path_buf()),
            line,
            command_line: false,
        }
    }

    pub fn command_line(flag: &str, position: usize) -> Self {
        Origin {
            file: Arc::new(PathBuf::from(flag)),
            line: position,
            command_line: true,
        }
    }

    /// The directory relative paths written here are resolved against: the file's directory,
    /// or the working directory for a `--set` flag. Absolute, so resolved recipes work anywhere.
    pub fn base_dir(&self) -> PathBuf {
        let cwd = std::env::current_dir().unwrap_or_default();
        if self.command_line {
            return cwd;
        }
        normalize(&cwd.join(self.file.parent().unwrap_or(Path::new(""))))
    }
}

/// Removes `.` and `..` components without touching the file system (symlinks stay as written).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.command_line {
            write!(f, "--set {} (override {})", self.file.display(), self.line)
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
    /// A YAML tag such as `!new:cosyvoice.flow.flow.MaskedDiffWithXvec` (HyperPyYAML uses them).
    pub tag: Option<String>,
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Node {
            value,
            origin,
            tag: None,
        }
    }

    /// The child under `key` if this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes and returns the child under `key`.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(entries) => {
                let at = entries.iter().position(|(k, _)| k.name == key)?;
                Some(entries.remove(at).1)
            }
            _ => None,
        }
    }

    /// A short description of the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A YAML syntax error, with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub origin: Origin,
    pub message: String,
}

/// The largest YAML file read: recipes, characters and decoder configs are a few kilobytes.
pub const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// The most nodes a document may expand to, aliases counted at their full size, so that an
/// alias bomb ("billion laughs") is refused after a few megabytes instead of exhausting memory.
pub const MAX_NODES: usize = 200_000;

/// Reads a YAML file, refusing one too large to be a recipe or config before reading it.
pub fn read_document(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::metadata(path)?.len();
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{bytes} bytes is too large for a YAML recipe or config (at most {} MiB)",
                MAX_DOCUMENT_BYTES >> 20
            ),
        ));
    }
    std::fs::read_to_string(path)
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str, file: &Path) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        file: Arc::new(file.to_path_buf()),
        stack: Vec::new(),
        anchors: Vec::new(),
        nodes: 0,
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        origin: Origin {
            file: builder.file.clone(),
            line: e.marker().line(),
            command_line: false,
        },
        message: e.info().to_string(),
    })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or_else(|| {
        Node::new(
            Value::Map(Vec::new()),
            Origin {
                file: builder.file.clone(),
                line: 1,
                command_line: false,
            },
        )
    }))
}

/// Parses a scalar given on the command line (`--set key=value`) with YAML's rules, so `1e-4`,
/// `true`, `[a, b]` and `{x: 1}` mean what they mean in a recipe.
pub fn parse_inline(text: &str, origin: &Origin) -> Result<Node, SyntaxError> {
    let mut node = parse(text, &origin.file).map_err(|e| SyntaxError {
        origin: origin.clone(),
        message: e.message,
    })?;
    fn relocate(node: &mut Node, origin: &Origin) {
        node.origin = origin.clone();
        match &mut node.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| relocate(n, origin)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.origin = origin.clone();
                relocate(v, origin)
            }),
            _ => {}
        }
    }
    relocate(&mut node, origin);
    Ok(node)
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Key>),
}

struct Builder {
    file: Arc<PathBuf>,
    stack: Vec<Frame>,
    /// Anchor id, the anchored node, and its size in nodes.
    anchors: Vec<(usize, Node, usize)>,
    /// Nodes built so far, aliases counted at their expanded size.
    nodes: usize,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn origin(&self, mark: &Marker) -> Origin {
        Origin {
            file: self.file.clone(),
            line: mark.line(),
            command_line: false,
        }
    }

    /// Counts `added` more nodes; false (with the error recorded) past [`MAX_NODES`].
    fn count(&mut self, added: usize, origin: &Origin) -> bool {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            self.error.get_or_insert(SyntaxError {
                origin: origin.clone(),
                message: format!(
                    "the document expands to more than {MAX_NODES} values \
                     (nested aliases of aliases?); recipes and configs are far smaller"
                ),
            });
            return false;
        }
        true
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = subtree_size(&node);
            self.anchors.push((anchor, node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, pending)) => match pending.take() {
                None => {
                    // A mapping key. Only scalar keys are meaningful in recipes and configs.
                    let name = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(x) => x.to_string(),
                        Value::Null => "null".to_string(),
                        _ => {
                            self.error.get_or_insert(SyntaxError {
                                origin: node.origin.clone(),
                                message: "mapping keys must be plain scalars".into(),
                            });
                            String::new()
                        }
                    };
                    *pending = Some(Key {
                        name,
                        origin: node.origin,
                    });
                }
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                            self.error.get_or_insert(SyntaxError {
                                origin: key.origin.clone(),
                                message: format!(
                                    "duplicate key `{}` (first at line {})",
                                    key.name, first.origin.line
                                ),
                            });
                        }
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

fn subtree_size(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(subtree_size).sum(),
        Value::Map(entries) => entries.iter().map(|(_, v)| 1 + subtree_size(v)).sum(),
        _ => 0,
    }
}

fn tag_text(tag: Option<Tag>) -> Option<String> {
    tag.map(|t| format!("{}{}", t.handle, t.suffix))
}

fn scalar_value(text: &str, style: TScalarStyle, tagged: bool) -> Value {
    if style != TScalarStyle::Plain || tagged {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    let looks_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'));
    if looks_numeric {
        if let Ok(x) = text.replace('_', "").parse::<f64>() {
            return Value::Float(x);
        }
    }
    Value::Str(text.to_string())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let origin = self.origin(&mark);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, &origin) {
                    return;
                }
                let tag = tag_text(tag);
                let mut node = Node::new(scalar_value(&text, style, tag.is_some()), origin);
                node.tag = tag;
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                if !self.count(1, &origin) {
                    return;
                }
                let mut node = Node::new(Value::Seq(Vec::new()), origin);
                node.tag = tag_text(tag);
                self.stack.push(Frame::Seq(node, anchor));
            }
            Event::MappingStart(anchor, tag) => {
                if !self.count(1, &origin) {
                    return;
                }
                let mut node = Node::new(Value::Map(Vec::new()), origin);
                node.tag = tag_text(tag);
                self.stack.push(Frame::Map(node, anchor, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, _)) => {
                        (node, anchor)
                    }
                    None => return,
                };
                self.push_value(node, anchor);
            }
            Event::Alias(id) => match self.anchors.iter().rposition(|(a, _, _)| *a == id) {
                Some(at) => {
                    // Counted before the copy is made, so a bomb stops before it allocates.
                    if self.count(self.anchors[at].2, &origin) {
                        let node = self.anchors[at].1.clone();
                        self.push_value(node, 0);
                    }
                }
                None => {
                    self.error = Some(SyntaxError {
                        origin,
                        message: "alias to an unknown anchor".into(),
                    });
                }
            },
            Event::DocumentEnd
            | Event::DocumentStart
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_types() {
        let text = "a: 1\nb:\n  c: 1e-4\n  d: [x, 'y']\nflag: true\nnone:\n";
        let node = parse(text, Path::new("r.yaml")).unwrap();
        assert_eq!(node.get("a").unwrap().value, Value::Int(1));
        let b = node.get("b").unwrap();
        assert_eq!(b.get("c").unwrap().value, Value::Float(1e-4));
        assert_eq!(b.get("c").unwrap().origin.line, 3);
        assert_eq!(node.get("flag").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("none").unwrap().value, Value::Null);
        let d = b.get("d").unwrap();
        assert!(matches!(&d.value, Value::Seq(items) if items.len() == 2));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n", Path::new("r.yaml")).unwrap_err();
        assert_eq!(err.origin.line, 3);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn tags_are_kept() {
        let node = parse(
            "x: !ref <sample_rate>\ny: !new:a.B\n  k: 1\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(node.get("x").unwrap().tag.as_deref(), Some("!ref"));
        assert_eq!(node.get("x").unwrap().as_str(), Some("<sample_rate>"));
        assert_eq!(node.get("y").unwrap().tag.as_deref(), Some("!new:a.B"));
    }

    #[test]
    fn aliases_expand_but_an_alias_bomb_is_refused() {
        let node = parse("a: &x [1, 2]\nb: *x\n", Path::new("r.yaml")).unwrap();
        assert_eq!(node.get("a").unwrap().value, node.get("b").unwrap().value);

        let mut bomb = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..10 {
            let prior = format!("*l{}", level - 1);
            let items = vec![prior.as_str(); 9].join(", ");
            bomb.push_str(&format!("l{level}: &l{level} [{items}]\n"));
        }
        let err = parse(&bomb, Path::new("bomb.yaml")).unwrap_err();
        assert!(
            err.message.contains("expands to more than"),
            "{}",
            err.message
        );
        assert!(
            err.origin.line > 1 && err.origin.line <= 10,
            "{}",
            err.origin.line
        );
    }
}
