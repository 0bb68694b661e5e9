//! The lines a person should listen to before training, cut to small WAV files under
//! `listen/` for report.html's players: the least certain assignments, the lines left to
//! `other` that nearly went to a character, and a few lines of each character across their
//! range of certainty.

use std::path::{Path, PathBuf};

use super::line::{Line, OTHER};
use crate::audio::read::read_mono;

/// Under the output directory.
pub const DIR: &str = "listen";
const LEAST_CERTAIN: usize = 20;
const NEAR_MISSES: usize = 10;
const PER_CHARACTER: usize = 5;

/// Why a line is offered for listening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    LeastCertain,
    NearMiss,
    Sample,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::LeastCertain => "Least certain lines given to a character",
            Section::NearMiss => "Lines left to `other` that nearly went to a character",
            Section::Sample => "A few lines of each character (from most to least certain)",
        }
    }
}

/// Indices into `lines` per section, each line at most once.
pub fn choose(lines: &[Line]) -> Vec<(Section, usize)> {
    let mut chosen: Vec<(Section, usize)> = Vec::new();
    let taken = |chosen: &Vec<(Section, usize)>, i: usize| chosen.iter().any(|(_, j)| *j == i);
    let assigned: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trained()).collect();
    let certainty = |i: &usize| lines[*i].assignment.as_ref().map_or(0.0, |a| a.confidence);
    let mut by_certainty = assigned.clone();
    by_certainty.sort_by(|a, b| certainty(a).total_cmp(&certainty(b)));
    for &i in by_certainty.iter().take(LEAST_CERTAIN) {
        chosen.push((Section::LeastCertain, i));
    }
    let mut others: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].rejection.is_none() && lines[i].speaker() == OTHER)
        .filter(|&i| lines[i].assignment.is_some())
        .collect();
    // The closest to the boundary first: the lines that nearly went to a character.
    others.sort_by(|a, b| certainty(b).total_cmp(&certainty(a)));
    for &i in others.iter().take(NEAR_MISSES) {
        chosen.push((Section::NearMiss, i));
    }
    let mut characters: Vec<&str> = assigned.iter().map(|&i| lines[i].speaker()).collect();
    characters.sort();
    characters.dedup();
    for character in characters {
        let mut theirs: Vec<usize> = by_certainty
            .iter()
            .copied()
            .filter(|&i| lines[i].speaker() == character)
            .collect();
        theirs.reverse();
        let n = theirs.len();
        for k in 0..PER_CHARACTER.min(n) {
            // Evenly spread from the most certain to the least.
            let i = theirs[k * (n - 1) / (PER_CHARACTER - 1).max(1)];
            if !taken(&chosen, i) {
                chosen.push((Section::Sample, i));
            }
        }
    }
    chosen
}

/// A file name from a line id: letters, digits, `-`, `_` and `.` kept, the rest `_`.
pub fn file_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.wav", safe.trim_start_matches('.'))
}

/// Cuts each chosen line's span to `out/listen/<id>.wav` (16-bit), replacing the clips of an
/// earlier run; returns the relative path of each clip that could be cut.
pub fn cut(out: &Path, lines: &[Line], chosen: &[(Section, usize)]) -> Vec<Option<PathBuf>> {
    let dir = out.join(DIR);
    // Only a real directory of ours is cleaned and written: never through a symlink.
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if !meta.is_dir() => {
            tracing::warn!(
                "{} is not a directory (a symlink?): the listening clips are not written",
                dir.display()
            );
            return vec![None; chosen.len()];
        }
        Ok(_) => {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let regular = entry.file_type().is_ok_and(|t| t.is_file());
                if regular && path.extension().is_some_and(|e| e == "wav") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        Err(_) => {
            if std::fs::create_dir(&dir).is_err() {
                return vec![None; chosen.len()];
            }
        }
    }
    chosen
        .iter()
        .map(|&(_, i)| {
            let line = &lines[i];
            let audio = read_mono(&line.episode, Some((line.start, Some(line.end)))).ok()?;
            let name = file_name(&line.id());
            let path = dir.join(&name);
            let tmp = dir.join(format!(".{name}.tmp"));
            crate::audio::wav::write_mono_i16(&tmp, &audio).ok()?;
            std::fs::rename(&tmp, &path).ok()?;
            Some(Path::new(DIR).join(name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_names_cannot_leave_the_directory() {
        assert_eq!(file_name("s01e01-0003"), "s01e01-0003.wav");
        assert_eq!(
            file_name("../../etc/passwd-0001"),
            "_.._etc_passwd-0001.wav"
        );
        assert_eq!(file_name("épisode 1-0002"), "_pisode_1-0002.wav");
    }
}
