//! Which enrolled character speaks each line, learned from the whole show rather than from the
//! enrollment clips alone.
//!
//! A character's voice has range (calm, shouting, whispering), and a few enrollment clips hold
//! only part of it; the unenrolled voices of a show (extras) are many, and some sound close to a
//! character. So assignment is iterative, measured on real acted dialogue (benches/perf-notes.md,
//! "build-data on real voices"):
//!
//! 1. **Calibration.** The enrollment clips' similarity to the centroid of their character's
//!    other clips (leave-one-out) says how alike one utterance of a voice is to that voice with
//!    this encoder on this show; the line threshold sits `FLOOR_BELOW` under it, and lines as
//!    alike as the enrollment clips themselves (`ANCHOR_BELOW` under it) are trusted enough to
//!    join the enrollment.
//! 2. **Self-training.** Each character's voice is the centroid of its enrollment clips plus the
//!    lines confidently assigned to it in the previous round, so the voice grows into its range.
//! 3. **Competitors.** Among the lines that sound like no character, dense groups (at least
//!    `MIN_GROUP` lines alike above the threshold) are voices too, never trained on: an extra with
//!    many lines takes them from a character whose voice is merely the nearest enrolled one.
//!
//! A line goes to a character when that character's voice is the nearest of all voices, at the
//! threshold or above, and leads the runner-up by the margin. Corrections pin lines: a line
//! corrected to a character joins its enrollment; lines corrected to `other` are always looked
//! at for competitor groups (a single one is not a voice: one mistaken verdict must not take a
//! character's lines away). Rounds repeat until nothing changes (at most `MAX_ROUNDS`).

use serde::Serialize;

use crate::speaker::{cosine, normalized};

/// The threshold under the enrollment's leave-one-out similarity.
const FLOOR_BELOW: f64 = 0.15;
/// The level for joining the enrollment, under the leave-one-out similarity.
const ANCHOR_BELOW: f64 = 0.05;
/// How far an anchor must lead the runner-up voice.
const ANCHOR_MARGIN: f64 = 0.1;
/// Competitor groups are looked for among lines this far under the threshold.
const POOL_BELOW: f64 = 0.05;
const MIN_GROUP: usize = 5;
/// The most pooled lines searched for competitor groups (the search is quadratic): an even
/// sample of a larger pool, lines corrected to `other` always in it. A season's pool is smaller;
/// past it, an extra with only a handful of lines may go unfound.
const MAX_GROUP_POOL: usize = 6000;
const MAX_ROUNDS: usize = 10;
const DEFAULT_MARGIN: f64 = 0.05;

/// The label of lines given to no enrolled character.
pub const OTHER: &str = "other";

/// What a user may fix instead of the calibration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// The similarity threshold; `None`: calibrated.
    pub threshold: Option<f64>,
    /// How far the nearest voice must lead the runner-up; `None`: 0.05.
    pub margin: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// The character, or `None`: `other`.
    pub character: Option<String>,
    /// The nearest character and the line's similarity to its voice.
    pub nearest: String,
    pub similarity: f64,
    /// The nearest voice's lead over the runner-up voice (characters and competitors).
    pub margin: f64,
    /// Distance to the nearest decision boundary (threshold or margin); negative for lines
    /// left to `other`, small for lines either way could have gone.
    pub confidence: f64,
}

/// A pinned verdict on a line (from the corrections file).
#[derive(Clone, Debug, PartialEq)]
pub enum Pin {
    Character(usize),
    Other,
}

/// How the thresholds were chosen and what the rounds found, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// Per character: mean leave-one-out similarity of its enrollment clips (`None` with one
    /// clip).
    pub enrollment_similarity: Vec<(String, Option<f64>)>,
    pub threshold: f64,
    pub anchor_level: f64,
    pub margin: f64,
    /// "calibrated" or "fixed by --threshold".
    pub threshold_source: String,
    pub rounds: usize,
    /// Lines that joined each character's enrollment in the last round.
    pub anchors: Vec<(String, usize)>,
    /// Voices found among the lines no character claims (each a group of lines).
    pub competitor_groups: Vec<usize>,
}

/// A character's enrolled voice: its enrollment embeddings.
pub struct Voice {
    pub name: String,
    pub clips: Vec<Vec<f32>>,
}

/// Assigns every line that has an embedding (`None`: rejected before assignment); `pins` is
/// parallel to `lines`. `fallback_similarity` stands in for the leave-one-out similarity when
/// no character has two clips (the encoder's typical value).
pub fn assign_show(
    lines: &[Option<&[f32]>],
    voices: &[Voice],
    pins: &[Option<Pin>],
    settings: &Settings,
    fallback_similarity: f64,
) -> (Vec<Option<Assignment>>, Calibration) {
    let enrollment_similarity: Vec<(String, Option<f64>)> = voices
        .iter()
        .map(|v| (v.name.clone(), leave_one_out(&v.clips)))
        .collect();
    let known: Vec<f64> = enrollment_similarity
        .iter()
        .filter_map(|(_, s)| *s)
        .collect();
    let typical = if known.is_empty() {
        fallback_similarity
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    let (threshold, source) = match settings.threshold {
        Some(t) => (t, "fixed by --threshold".to_string()),
        None => (
            (typical - FLOOR_BELOW).clamp(0.2, 0.95),
            format!(
                "calibrated: the enrollment clips' leave-one-out similarity {typical:.3} - {FLOOR_BELOW}"
            ),
        ),
    };
    let anchor_level = match settings.threshold {
        Some(t) => t + (FLOOR_BELOW - ANCHOR_BELOW),
        None => typical - ANCHOR_BELOW,
    };
    let margin = settings.margin.unwrap_or(DEFAULT_MARGIN);

    let dim = voices[0].clips[0].len();
    let pinned_to = |c: usize| {
        lines
            .iter()
            .zip(pins)
            .filter_map(move |(e, p)| match (e, p) {
                (Some(e), Some(Pin::Character(k))) if *k == c => Some(*e),
                _ => None,
            })
    };
    let mut anchors: Vec<Vec<usize>> = vec![Vec::new(); voices.len()];
    let mut decisions: Vec<Option<Assignment>> = Vec::new();
    let mut groups: Vec<usize> = Vec::new();
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        rounds = round + 1;
        let characters: Vec<Vec<f32>> = voices
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let members = v
                    .clips
                    .iter()
                    .map(Vec::as_slice)
                    .chain(pinned_to(c))
                    .chain(anchors[c].iter().filter_map(|&i| lines[i]));
                mean_direction(members, dim)
            })
            .collect();
        // Competitor voices among the lines no character comes near.
        let pool: Vec<usize> = (0..lines.len())
            .filter(|&i| match pins[i] {
                Some(Pin::Other) => lines[i].is_some(),
                Some(Pin::Character(_)) => false,
                None => lines[i].is_some_and(|e| {
                    characters
                        .iter()
                        .map(|c| cosine(e, c))
                        .fold(f64::MIN, f64::max)
                        < threshold - POOL_BELOW
                }),
            })
            .collect();
        let pool = thinned(
            pool,
            |i| matches!(pins[i], Some(Pin::Other)),
            MAX_GROUP_POOL,
        );
        let found = dense_groups(lines, &pool, threshold, MIN_GROUP);
        groups = found.iter().map(Vec::len).collect();
        let competitors: Vec<Vec<f32>> = found
            .iter()
            .map(|g| mean_direction(g.iter().filter_map(|&i| lines[i]), dim))
            .collect();

        let mut next_anchors: Vec<Vec<usize>> = vec![Vec::new(); voices.len()];
        let next: Vec<Option<Assignment>> = lines
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let e = (*e)?;
                let a = decide(e, voices, &characters, &competitors, threshold, margin);
                let trusted = pins[i].is_none()
                    && a.character.is_some()
                    && a.similarity >= anchor_level
                    && a.margin >= ANCHOR_MARGIN;
                if let Some(c) = nearest_index(voices, &a).filter(|_| trusted) {
                    next_anchors[c].push(i);
                }
                Some(pinned(a, &pins[i], voices))
            })
            .collect();
        let settled = next == decisions && next_anchors == anchors;
        decisions = next;
        anchors = next_anchors;
        if settled {
            break;
        }
    }
    let calibration = Calibration {
        enrollment_similarity,
        threshold,
        anchor_level,
        margin,
        threshold_source: source,
        rounds,
        anchors: voices
            .iter()
            .zip(&anchors)
            .map(|(v, a)| (v.name.clone(), a.len()))
            .collect(),
        competitor_groups: groups,
    };
    (decisions, calibration)
}

fn nearest_index(voices: &[Voice], a: &Assignment) -> Option<usize> {
    voices.iter().position(|v| v.name == a.nearest)
}

/// The nearest character's decision for embedding `e` against every voice.
fn decide(
    e: &[f32],
    voices: &[Voice],
    characters: &[Vec<f32>],
    competitors: &[Vec<f32>],
    threshold: f64,
    margin: f64,
) -> Assignment {
    let mut character_scores: Vec<(f64, usize)> = characters
        .iter()
        .enumerate()
        .map(|(c, v)| (cosine(e, v), c))
        .collect();
    character_scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (similarity, nearest) = character_scores[0];
    let runner_up = character_scores
        .get(1)
        .map(|s| s.0)
        .into_iter()
        .chain(competitors.iter().map(|c| cosine(e, c)))
        .fold(f64::MIN, f64::max);
    let lead = if runner_up == f64::MIN {
        similarity
    } else {
        similarity - runner_up
    };
    let confidence = (similarity - threshold).min(lead - margin);
    Assignment {
        character: (confidence >= 0.0).then(|| voices[nearest].name.clone()),
        nearest: voices[nearest].name.clone(),
        similarity,
        margin: lead,
        confidence,
    }
}

/// `a` with a pinned verdict applied.
fn pinned(mut a: Assignment, pin: &Option<Pin>, voices: &[Voice]) -> Assignment {
    match pin {
        Some(Pin::Character(c)) => a.character = Some(voices[*c].name.clone()),
        Some(Pin::Other) => a.character = None,
        None => {}
    }
    a
}

/// Mean leave-one-out similarity of `clips` (each against the centroid of the others).
fn leave_one_out(clips: &[Vec<f32>]) -> Option<f64> {
    if clips.len() < 2 {
        return None;
    }
    let dim = clips[0].len();
    let total: f64 = (0..clips.len())
        .map(|i| {
            let rest = mean_direction(
                clips
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c.as_slice()),
                dim,
            );
            cosine(&clips[i], &rest)
        })
        .sum();
    Some(total / clips.len() as f64)
}

/// The L2-normalized mean of L2-normalized vectors.
fn mean_direction<'a>(vectors: impl Iterator<Item = &'a [f32]>, dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    for v in vectors {
        let n = normalized(v);
        sum.iter_mut().zip(&n).for_each(|(s, x)| *s += x);
    }
    normalized(&sum)
}

/// At most `max` of `pool`: those `keep` says first, then an even sample of the others.
fn thinned(pool: Vec<usize>, keep: impl Fn(usize) -> bool, max: usize) -> Vec<usize> {
    if pool.len() <= max {
        return pool;
    }
    let (mut kept, rest): (Vec<usize>, Vec<usize>) = pool.into_iter().partition(|&i| keep(i));
    kept.truncate(max);
    let room = max - kept.len();
    kept.extend((0..room).map(|k| rest[k * rest.len() / room]));
    kept.sort_unstable();
    kept
}

/// Greedy dense groups among `pool`: repeatedly the line with the most neighbours (cosine at or
/// above `link`) still ungrouped, with those neighbours, while it has at least `min_size`.
fn dense_groups(
    lines: &[Option<&[f32]>],
    pool: &[usize],
    link: f64,
    min_size: usize,
) -> Vec<Vec<usize>> {
    let n = pool.len();
    if n < min_size {
        return Vec::new();
    }
    let unit: Vec<Vec<f32>> = pool
        .iter()
        .map(|&i| normalized(lines[i].expect("pooled lines have embeddings")))
        .collect();
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n];
    for a in 0..n {
        neighbours[a].push(a);
        for b in a + 1..n {
            let dot: f32 = unit[a].iter().zip(&unit[b]).map(|(x, y)| x * y).sum();
            if dot as f64 >= link {
                neighbours[a].push(b);
                neighbours[b].push(a);
            }
        }
    }
    let mut free = vec![true; n];
    let mut counts: Vec<usize> = neighbours.iter().map(Vec::len).collect();
    let mut groups = Vec::new();
    loop {
        let best = (0..n)
            .filter(|&a| free[a])
            .max_by_key(|&a| (counts[a], std::cmp::Reverse(a)));
        let Some(best) = best.filter(|&a| counts[a] >= min_size) else {
            break;
        };
        let members: Vec<usize> = neighbours[best]
            .iter()
            .copied()
            .filter(|&b| free[b])
            .collect();
        for &m in &members {
            free[m] = false;
            for &other in &neighbours[m] {
                counts[other] = counts[other].saturating_sub(1);
            }
        }
        groups.push(members.iter().map(|&m| pool[m]).collect());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_pool_is_thinned_evenly_keeping_pinned_lines() {
        let small: Vec<usize> = (0..10).collect();
        assert_eq!(thinned(small.clone(), |_| false, 10), small);
        let thinned = thinned((0..1000).collect(), |i| i == 999 || i == 3, 10);
        assert_eq!(thinned, [0, 3, 125, 250, 375, 500, 624, 749, 874, 999]);
    }

    /// A unit vector near axis `axis` of 8, nudged by `jitter` along axis 7.
    fn near(axis: usize, jitter: f32) -> Vec<f32> {
        let mut v = vec![0f32; 8];
        v[axis] = 1.0;
        v[7] += jitter;
        normalized(&v)
    }

    fn voices() -> Vec<Voice> {
        vec![
            Voice {
                name: "ada".into(),
                clips: vec![near(0, 0.3), near(0, -0.3), near(0, 0.2)],
            },
            Voice {
                name: "bram".into(),
                clips: vec![near(1, 0.3), near(1, -0.2)],
            },
        ]
    }

    #[test]
    fn lines_go_to_the_nearest_voice_and_an_unenrolled_group_competes() {
        // Ada's and Bram's lines, and six lines of an extra between Ada and nobody: alone, the
        // extra would be nearest to Ada; as a group, it is a voice of its own.
        let mut embeddings = vec![near(0, 0.1), near(0, 0.4), near(1, 0.0), near(1, 0.3)];
        for j in 0..6 {
            let mut v = vec![0f32; 8];
            v[0] = 0.5;
            v[2] = 1.0;
            v[3] = 0.05 * j as f32;
            embeddings.push(normalized(&v));
        }
        let lines: Vec<Option<&[f32]>> = embeddings.iter().map(|e| Some(e.as_slice())).collect();
        let pins = vec![None; lines.len()];
        let (decisions, calibration) =
            assign_show(&lines, &voices(), &pins, &Settings::default(), 0.75);
        let who: Vec<Option<&str>> = decisions
            .iter()
            .map(|d| d.as_ref().unwrap().character.as_deref())
            .collect();
        assert_eq!(
            &who[..4],
            &[Some("ada"), Some("ada"), Some("bram"), Some("bram")]
        );
        assert!(who[4..].iter().all(|w| w.is_none()), "{who:?}");
        assert_eq!(calibration.competitor_groups, vec![6]);
        assert!(calibration.threshold_source.starts_with("calibrated"));

        // A fixed threshold above every line leaves everything to `other`; a pin still decides.
        let mut pins = pins;
        pins[0] = Some(Pin::Character(1));
        let fixed = Settings {
            threshold: Some(0.999),
            margin: None,
        };
        let (decisions, _) = assign_show(&lines, &voices(), &pins, &fixed, 0.75);
        assert_eq!(
            decisions[0].as_ref().unwrap().character.as_deref(),
            Some("bram")
        );
        assert!(decisions[1..]
            .iter()
            .all(|d| d.as_ref().unwrap().character.is_none()));
    }

    #[test]
    fn dense_groups_take_the_densest_first() {
        let e: Vec<Vec<f32>> = (0..7)
            .map(|i| {
                if i < 5 {
                    near(0, 0.01 * i as f32)
                } else {
                    near(1, 0.0)
                }
            })
            .collect();
        let lines: Vec<Option<&[f32]>> = e.iter().map(|v| Some(v.as_slice())).collect();
        let groups = dense_groups(&lines, &(0..7).collect::<Vec<_>>(), 0.9, 2);
        assert_eq!(groups, vec![vec![0, 1, 2, 3, 4], vec![5, 6]]);
    }
}
