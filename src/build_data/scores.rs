//! How right the assignment is, per character: against the speaker names a show's subtitles
//! carry, or against a truth file (`--truth`: who really speaks each line, as the real-voice
//! benchmark knows it). Recall counts every line of the character, rejected ones included
//! ("how much of the character did we keep"); precision counts the lines given to it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::line::{Line, OTHER};
use crate::data::speaker_names;

/// Line id (`<episode>-<line:04>`) -> the speaker who really says it.
pub type Truth = HashMap<String, String>;

/// Reads a truth file: JSONL rows `{"episode": "s01e01", "line": 12, "speaker": "ada"}` (other
/// keys ignored); `line` numbers the episode's subtitle lines from 1, as build-data's ids do.
pub fn read_truth(path: &Path) -> Result<Truth, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read truth file {}: {e}", path.display()))?;
    let mut truth = Truth::new();
    for (n, row) in text.lines().enumerate() {
        if row.trim().is_empty() {
            continue;
        }
        let place = || format!("{}:{}", path.display(), n + 1);
        let value: serde_json::Value =
            serde_json::from_str(row).map_err(|e| format!("{}: {e}", place()))?;
        let field = |key: &str| {
            value
                .get(key)
                .filter(|v| !v.is_null())
                .ok_or_else(|| format!("{}: no `{key}`", place()))
        };
        let episode = field("episode")?
            .as_str()
            .ok_or_else(|| format!("{}: `episode` is not a string", place()))?;
        let line = field("line")?
            .as_u64()
            .ok_or_else(|| format!("{}: `line` is not a positive number", place()))?;
        let speaker = field("speaker")?
            .as_str()
            .ok_or_else(|| format!("{}: `speaker` is not a string", place()))?;
        truth.insert(format!("{episode}-{line:04}"), speaker.to_string());
    }
    Ok(truth)
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CharacterScore {
    /// Lines the character really speaks.
    pub lines: usize,
    /// Lines given to the character.
    pub assigned: usize,
    /// Lines given to the character that are the character's.
    pub right: usize,
    pub recall: f64,
    pub precision: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Scores {
    /// "subtitle names" or the truth file's name.
    pub against: String,
    /// Lines with a known speaker.
    pub lines: usize,
    pub characters: BTreeMap<String, CharacterScore>,
    /// Lines of voices nobody enrolled, and how many of them were given to a character.
    pub unenrolled: usize,
    pub unenrolled_assigned: usize,
}

/// Scores `lines` against `expected` (a line's real speaker, when known): the enrolled
/// `characters` by name (without regard to case), everybody else as `other`. `None` when no
/// line has a known speaker.
pub fn score(
    lines: &[Line],
    characters: &[String],
    against: &str,
    expected: impl Fn(&Line) -> Option<String>,
) -> Option<Scores> {
    let mut scores = Scores {
        against: against.to_string(),
        lines: 0,
        characters: characters
            .iter()
            .map(|c| {
                let zero = CharacterScore {
                    lines: 0,
                    assigned: 0,
                    right: 0,
                    recall: 0.0,
                    precision: 0.0,
                };
                (c.clone(), zero)
            })
            .collect(),
        unenrolled: 0,
        unenrolled_assigned: 0,
    };
    for line in lines {
        let Some(speaker) = expected(line) else {
            continue;
        };
        scores.lines += 1;
        let truth = characters
            .iter()
            .find(|c| speaker_names::same(c, &speaker))
            .map_or(OTHER, String::as_str);
        let given = line.speaker();
        if given != OTHER {
            let s = scores.characters.get_mut(given).expect("an enrolled name");
            s.assigned += 1;
            if given == truth {
                s.right += 1;
            }
        }
        if truth == OTHER {
            scores.unenrolled += 1;
            scores.unenrolled_assigned += usize::from(given != OTHER);
        } else {
            scores
                .characters
                .get_mut(truth)
                .expect("an enrolled name")
                .lines += 1;
        }
    }
    if scores.lines == 0 {
        return None;
    }
    for s in scores.characters.values_mut() {
        s.recall = s.right as f64 / s.lines.max(1) as f64;
        s.precision = s.right as f64 / s.assigned.max(1) as f64;
    }
    Some(scores)
}

impl Scores {
    /// The table the console and report.md print.
    pub fn table(&self) -> String {
        let mut s = format!(
            "against {} ({} lines with a known speaker):\n",
            self.against, self.lines
        );
        for (name, c) in &self.characters {
            s.push_str(&format!(
                "  {name:<12} recall {:>5.1}% ({} of {})  precision {:>5.1}% ({} of {})\n",
                100.0 * c.recall,
                c.right,
                c.lines,
                100.0 * c.precision,
                c.right,
                c.assigned
            ));
        }
        if self.unenrolled > 0 {
            s.push_str(&format!(
                "  unenrolled voices: {} lines, {} given to a character\n",
                self.unenrolled, self.unenrolled_assigned
            ));
        }
        s
    }
}
