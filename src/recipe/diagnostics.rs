//! Recipe errors: each names a file, a line and a key path; all of them are gathered before
//! anything runs, so one `validate` shows every problem at once.

use std::cell::RefCell;
use std::fmt;

use super::node::Origin;

#[derive(Clone, Debug, PartialEq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    /// Dotted key path such as `lm.optimizer.lr` (empty for a whole file).
    pub key: String,
    pub message: String,
    /// A data or weight path that is not there yet (a warning only when not running).
    pub missing_input: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let needed = if self.missing_input && self.severity == Severity::Warning {
            " (needed to run)"
        } else {
            ""
        };
        if self.key.is_empty() {
            write!(f, "{}: {level}: {}{needed}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}: {level}: `{}`: {}{needed}",
                self.origin, self.key, self.message
            )
        }
    }
}

/// Collects diagnostics; shared by reference between the readers of one recipe.
#[derive(Default, Debug)]
pub struct Diagnostics {
    items: RefCell<Vec<Diagnostic>>,
}

impl Diagnostics {
    pub fn error(&self, origin: &Origin, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, origin, key, message.into(), false);
    }

    pub fn warning(&self, origin: &Origin, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, origin, key, message.into(), false);
    }

    /// A warning about an input that is not there yet (what a dry run lists as missing).
    pub fn missing_input(&self, origin: &Origin, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, origin, key, message.into(), true);
    }

    fn push(
        &self,
        severity: Severity,
        origin: &Origin,
        key: &str,
        message: String,
        missing_input: bool,
    ) {
        let mut items = self.items.borrow_mut();
        let duplicate = items
            .iter()
            .any(|d| d.origin == *origin && d.key == key && d.message == message);
        if !duplicate {
            items.push(Diagnostic {
                severity,
                origin: origin.clone(),
                key: key.to_string(),
                message,
                missing_input,
            });
        }
    }

    /// Adds diagnostics found in another file (a decoder config.yaml, say).
    pub fn extend(&self, items: Vec<Diagnostic>) {
        self.items.borrow_mut().extend(items);
    }

    pub fn has_errors(&self) -> bool {
        self.items
            .borrow()
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items.into_inner()
    }
}

/// The nearest of `candidates` to `word` when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.len().max(3) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// A failed recipe: every diagnostic, errors first.
#[derive(Debug)]
pub struct RecipeErrors(pub Vec<Diagnostic>);

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{errors} error{} in recipe",
            if errors == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for RecipeErrors {}
