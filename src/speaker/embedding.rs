//! What a speaker encoder gives, and the cosine geometry over embeddings.

/// One utterance's embedding and what it was computed from.
#[derive(Clone, Debug)]
pub struct Utterance {
    /// L2-normalized.
    pub embedding: Vec<f32>,
    /// Windows the embedding averages (1 for encoders that pool over the whole utterance).
    pub partials: usize,
    /// Seconds of audio left after the voice-activity trim.
    pub voiced_seconds: f64,
}

pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// The L2-normalized mean of L2-normalized embeddings (a speaker's centroid); `None` for none.
pub fn centroid<'a>(embeddings: impl IntoIterator<Item = &'a [f32]>) -> Option<Vec<f32>> {
    let mut sum: Vec<f32> = Vec::new();
    let mut count = 0;
    for e in embeddings {
        if sum.is_empty() {
            sum = vec![0f32; e.len()];
        }
        sum.iter_mut().zip(e).for_each(|(s, v)| *s += v);
        count += 1;
    }
    (count > 0).then(|| normalized(&sum))
}
