//! Which enrolled character a line's voice is, and the scenes lines form.

use crate::eval::speaker::cosine;

/// When a line is given to its nearest character.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Cosine similarity to the character's enrolled voice.
    pub similarity: f64,
    /// How far the nearest character must lead the runner-up.
    pub margin: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// The character, or `None`: `other`.
    pub character: Option<String>,
    /// The nearest character and its similarity, whether or not it was assigned.
    pub nearest: String,
    pub similarity: f64,
    /// Nearest minus runner-up similarity (the nearest's similarity with one character).
    pub margin: f64,
}

/// The nearest of `voices` (name, centroid) to `embedding`, if it clears `thresholds`.
pub fn assign(
    embedding: &[f32],
    voices: &[(String, Vec<f32>)],
    thresholds: &Thresholds,
) -> Assignment {
    let mut scored: Vec<(f64, &str)> = voices
        .iter()
        .map(|(name, voice)| (cosine(embedding, voice), name.as_str()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (similarity, nearest) = scored[0];
    let margin = similarity - scored.get(1).map_or(0.0, |s| s.0);
    let clears = similarity >= thresholds.similarity && margin >= thresholds.margin;
    Assignment {
        character: clears.then(|| nearest.to_string()),
        nearest: nearest.to_string(),
        similarity,
        margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_voice_with_threshold_and_margin() {
        let voices = vec![
            ("ada".to_string(), vec![1.0, 0.0, 0.0]),
            ("bram".to_string(), vec![0.0, 1.0, 0.0]),
        ];
        let t = Thresholds {
            similarity: 0.7,
            margin: 0.1,
        };
        let a = assign(&[0.9, 0.1, 0.1], &voices, &t);
        assert_eq!(a.character.as_deref(), Some("ada"));
        // Near both: the margin fails.
        let a = assign(&[0.7, 0.7, 0.0], &voices, &t);
        assert_eq!((a.character, a.nearest.as_str()), (None, "ada"));
        // Near neither.
        let a = assign(&[0.1, 0.1, 1.0], &voices, &t);
        assert!(a.character.is_none() && a.similarity < 0.7);
    }
}
