//! A subtitle line and what became of it (its span, rejection or assignment, scene).

use std::path::PathBuf;

use super::assign::Assignment;
use super::corrections::Verdict;
use super::subtitles::{BadCue, Cue};

pub use super::assign::OTHER;

/// Assignment of a line: the character, or `OTHER`.
pub fn label(assignment: &Assignment) -> &str {
    assignment.character.as_deref().unwrap_or(OTHER)
}

/// One subtitle line and what became of it.
pub struct Line {
    pub episode: PathBuf,
    pub episode_name: String,
    pub cue: Cue,
    /// The span read: the subtitle's, padded.
    pub start: f64,
    pub end: f64,
    pub rejection: Option<(String, String)>,
    pub assignment: Option<Assignment>,
    /// A person's verdict from the corrections file.
    pub correction: Option<Verdict>,
    pub scene: usize,
}

impl Line {
    pub fn id(&self) -> String {
        format!("{}-{:04}", self.episode_name, self.cue.number)
    }

    /// The speaker label of a line: its character, or `other` (also for rejected lines).
    pub fn speaker(&self) -> &str {
        match (&self.rejection, &self.assignment) {
            (None, Some(a)) => label(a),
            _ => OTHER,
        }
    }

    pub fn trained(&self) -> bool {
        self.rejection.is_none() && self.speaker() != OTHER
    }
}

/// A subtitle cue rejected before it became a line (a bad time, no text...), with its files.
pub struct BadLine {
    pub episode: PathBuf,
    pub subtitles: PathBuf,
    pub cue: BadCue,
}

/// Numbers the scenes of each episode: a new scene after a pause longer than `gap` seconds
/// (lines are in time order within an episode).
pub fn number_scenes(lines: &mut [Line], gap: f64) {
    let mut scene = 0;
    let mut previous: Option<(&std::path::Path, f64)> = None;
    let mut ends = Vec::with_capacity(lines.len());
    for line in lines.iter() {
        let new_scene = match previous {
            Some((episode, end)) => episode != line.episode.as_path() || line.cue.start - end > gap,
            None => true,
        };
        if new_scene {
            scene += 1;
        }
        ends.push(scene);
        let end = previous
            .filter(|(episode, _)| *episode == line.episode.as_path() && !new_scene)
            .map_or(line.cue.end, |(_, end)| end.max(line.cue.end));
        previous = Some((line.episode.as_path(), end));
    }
    for (line, scene) in lines.iter_mut().zip(ends) {
        line.scene = scene;
    }
}
