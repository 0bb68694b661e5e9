//! Speaker names are matched without regard to case: `Ada`, `ada` and `ADA` are one speaker.
//! A manifest's lines take the first spelling met, and the user is told when two spellings meet
//! (a typo across files is far likelier than two characters whose names differ only in case).

use std::collections::HashMap;

/// Whether two speaker names name the same speaker.
pub fn same(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// The first spelling of each speaker, and where another spelling was met.
#[derive(Default)]
pub struct Spellings {
    first: HashMap<String, (String, String)>,
    /// "`ada` (manifest.jsonl:4) is taken as `Ada` (first at manifest.jsonl:1)", once per spelling.
    pub notes: Vec<String>,
    noted: std::collections::HashSet<String>,
}

impl Spellings {
    /// `name` as first spelled; `place` says where this one was met (for the note).
    pub fn canonical(&mut self, name: &str, place: impl FnOnce() -> String) -> String {
        let key = name.to_lowercase();
        match self.first.get(&key) {
            Some((first, _)) if first == name => first.clone(),
            Some((first, first_place)) => {
                if self.noted.insert(name.to_string()) {
                    self.notes.push(format!(
                        "speaker `{name}` ({}) is taken as `{first}` (first at {first_place}): names match without regard to case",
                        place()
                    ));
                }
                first.clone()
            }
            None => {
                self.first.insert(key, (name.to_string(), place()));
                name.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_meet_once_and_keep_the_first() {
        let mut s = Spellings::default();
        assert_eq!(s.canonical("Ada", || "m:1".into()), "Ada");
        assert_eq!(s.canonical("ada", || "m:2".into()), "Ada");
        assert_eq!(s.canonical("ada", || "m:3".into()), "Ada");
        assert_eq!(s.canonical("Bram", || "m:4".into()), "Bram");
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
        assert!(s.notes[0].contains("`ada` (m:2) is taken as `Ada` (first at m:1)"));
        assert!(same("ÉMILE", "émile") && !same("ada", "adam"));
    }
}
