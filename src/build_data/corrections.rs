//! The corrections file: a person's verdicts on lines after listening to them (report.html
//! writes its text). A rerun applies them from the cache, and lines corrected to a character
//! join that character's enrollment, so the rest of the show is assigned against them too.
//!
//! ```yaml
//! # line id: a character, `other` (somebody not enrolled: context only) or `reject` (not speech
//! # of one person: left out, also as context)
//! s02e01-0012: bram
//! s02e01-0031: other
//! s02e02-0007: reject
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::assign::OTHER;
use super::yaml_place;

/// The file build-data reads from its output directory when `--corrections` is not given.
pub const FILE: &str = "corrections.yaml";
pub const REJECT: &str = "reject";
/// Larger files are refused before they are read (a mistaken path, not corrections).
const MAX_BYTES: u64 = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Character(String),
    Other,
    Reject,
}

/// Line id -> verdict.
pub type Corrections = BTreeMap<String, Verdict>;

/// Reads `path`, checking every id against `ids` (the build's lines) and every verdict against
/// `characters`; errors name the file and line.
pub fn read(
    path: &Path,
    ids: &std::collections::HashSet<String>,
    characters: &[String],
) -> Result<Corrections, String> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_BYTES {
        return Err(format!(
            "{}: {size} bytes; a corrections file holds one short line per corrected subtitle \
             line (at most {MAX_BYTES} bytes)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read corrections file {}: {e}", path.display()))?;
    let entries: Option<BTreeMap<String, String>> = serde_yaml::from_str(&text).map_err(|e| {
        format!(
            "{} (expected `line-id: character | other | reject` per line)",
            yaml_place::syntax_error(path, &e)
        )
    })?;
    let line_of = |id: &str| yaml_place::key_line(&text, path, None, id);
    let mut corrections = Corrections::new();
    for (id, verdict) in entries.unwrap_or_default() {
        if !ids.contains(&id) {
            let mut known: Vec<&String> = ids.iter().collect();
            known.sort();
            let near = known
                .into_iter()
                .min_by_key(|known| strsim::levenshtein(known, &id))
                .filter(|known| strsim::levenshtein(known, &id) <= 2)
                .map(|known| format!(" (did you mean {known}?)"))
                .unwrap_or_default();
            return Err(format!(
                "{}{}: no subtitle line `{id}` in these episodes{near}",
                path.display(),
                line_of(&id)
            ));
        }
        let verdict = match verdict.trim() {
            v if v.eq_ignore_ascii_case(OTHER) => Verdict::Other,
            v if v.eq_ignore_ascii_case(REJECT) => Verdict::Reject,
            v => match characters.iter().find(|c| c.eq_ignore_ascii_case(v)) {
                Some(c) => Verdict::Character(c.clone()),
                None => {
                    return Err(format!(
                    "{}{}: `{id}: {v}`: not an enrolled character ({}), `{OTHER}` or `{REJECT}`",
                    path.display(),
                    line_of(&id),
                    characters.join(", ")
                ))
                }
            },
        };
        corrections.insert(id, verdict);
    }
    Ok(corrections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_checked_against_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let ids: std::collections::HashSet<String> = ["s01-0001", "s01-0002", "s01-0003"]
            .map(String::from)
            .into();
        let characters = vec!["ada".to_string(), "bram".to_string()];
        std::fs::write(
            &path,
            "# listened\ns01-0001: Bram\ns01-0002: other\ns01-0003: reject\n",
        )
        .unwrap();
        let c = read(&path, &ids, &characters).unwrap();
        assert_eq!(c["s01-0001"], Verdict::Character("bram".into()));
        assert_eq!(c["s01-0002"], Verdict::Other);
        assert_eq!(c["s01-0003"], Verdict::Reject);

        std::fs::write(&path, "s01-0001: ada\ns01-0004: bram\n").unwrap();
        let e = read(&path, &ids, &characters).unwrap_err();
        assert!(
            e.ends_with(
                ":2: no subtitle line `s01-0004` in these episodes (did you mean s01-0001?)"
            ),
            "{e}"
        );
        std::fs::write(&path, "s01-0001: cyrus\n").unwrap();
        let e = read(&path, &ids, &characters).unwrap_err();
        assert!(
            e.contains(":1: `s01-0001: cyrus`: not an enrolled character (ada, bram)"),
            "{e}"
        );
        std::fs::write(&path, "[not, a, mapping]\n").unwrap();
        assert!(read(&path, &ids, &characters)
            .unwrap_err()
            .contains("line-id: character"));
        std::fs::write(&path, "").unwrap();
        assert!(read(&path, &ids, &characters).unwrap().is_empty());
    }
}
