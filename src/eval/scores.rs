//! Scoring: speaker embeddings and AQ metrics for every clip, then AP per candidate against the
//! reference clips (their centroid, every reference clip, and the same line spoken for real).

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::clips::Clip;
use super::quality::{self, Quality};
use crate::speaker::campplus::CamPlusPlusEncoder;
use crate::speaker::resemblyzer::Resemblyzer;
use crate::speaker::{centroid, cosine, Utterance};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClipScore {
    pub id: String,
    pub source: String,
    pub seconds: f64,
    /// Audio left after the speaker encoder's silence trimming.
    pub voiced_seconds: f64,
    /// Cosine to the centroid of the reference clips (for a reference clip: of the others).
    pub ap_centroid: Option<f64>,
    /// Mean cosine to each reference clip (for a reference clip: to each other one).
    pub ap_pairwise: Option<f64>,
    /// Cosine to the real recording of the same line, when there is one.
    pub ap_matched: Option<f64>,
    /// CAM++'s cosine to the reference clips' centroid (for a reference clip: of the others),
    /// beside Resemblyzer's AP; when eval had CAM++'s weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campplus_centroid: Option<f64>,
    #[serde(flatten)]
    pub quality: Quality,
}

/// Mean, spread and count of one metric over clips.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Stat {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: values.len(),
        })
    }
}

/// The metrics of a report, in display order: (key, label, how to read it).
pub const METRICS: [(&str, &str, &str); 7] = [
    (
        "ap_centroid",
        "AP: cosine to character centroid",
        "higher is closer",
    ),
    (
        "ap_pairwise",
        "AP: mean cosine to character clips",
        "higher is closer",
    ),
    (
        "ap_matched",
        "AP: cosine to the same line, real",
        "higher is closer",
    ),
    (
        "campplus_centroid",
        "CAM++: cosine to character centroid",
        "higher is closer",
    ),
    ("wada_snr_db", "AQ: WADA-SNR (dB)", "higher is cleaner"),
    (
        "hnr_db",
        "AQ: HNR (dB, Praat cc)",
        "higher is more periodic",
    ),
    (
        "spectral_flatness",
        "AQ: spectral flatness",
        "lower is more tonal",
    ),
];

impl ClipScore {
    pub fn metric(&self, key: &str) -> Option<f64> {
        match key {
            "ap_centroid" => self.ap_centroid,
            "ap_pairwise" => self.ap_pairwise,
            "ap_matched" => self.ap_matched,
            "campplus_centroid" => self.campplus_centroid,
            "wada_snr_db" => self.quality.wada_snr_db,
            "hnr_db" => self.quality.hnr_db,
            "spectral_flatness" => self.quality.spectral_flatness,
            _ => None,
        }
    }
}

pub fn summarize(clips: &[ClipScore]) -> BTreeMap<String, Stat> {
    METRICS
        .iter()
        .filter_map(|(key, _, _)| {
            let values: Vec<f64> = clips.iter().filter_map(|c| c.metric(key)).collect();
            Stat::of(&values).map(|s| (key.to_string(), s))
        })
        .collect()
}

pub struct Scored {
    pub candidates: Vec<ClipScore>,
    pub references: Vec<ClipScore>,
}

/// Scores `candidates` against `references`; `matched` holds real recordings of candidate lines
/// (by id) that need not be among the references.
pub fn score<B: Backend>(
    encoder: &Resemblyzer<B>,
    campplus: Option<&CamPlusPlusEncoder<B>>,
    candidates: &[Clip],
    references: &[Clip],
    matched: &[Clip],
) -> Scored {
    // Only the real recordings of lines that are among the candidates are needed.
    let matched: Vec<&Clip> = matched
        .iter()
        .filter(|m| candidates.iter().any(|c| c.id == m.id))
        .collect();
    let total = (candidates.len() + references.len() + matched.len()) as u64;
    let bar = crate::progress::bar(total, "embedding clips");
    let mut embed = |clip: &Clip| {
        let u = encoder.embed(&clip.audio);
        bar.inc(1);
        u
    };
    let cand: Vec<_> = candidates.iter().map(&mut embed).collect();
    let refs: Vec<_> = references.iter().map(&mut embed).collect();
    let real: BTreeMap<&str, Vec<f32>> = matched
        .into_iter()
        .map(|c| (c.id.as_str(), embed(c).embedding))
        .collect();
    bar.finish_and_clear();
    // CAM++ beside Resemblyzer: its embedding of every candidate and reference clip.
    let campplus_of = |clips: &[Clip]| -> Vec<Option<Vec<f32>>> {
        clips
            .iter()
            .map(|c| campplus.map(|e| e.embed(&c.audio).embedding))
            .collect()
    };
    let (cand_cam, refs_cam) = (campplus_of(candidates), campplus_of(references));
    let cam_centroid = |skip: Option<usize>| {
        centroid(
            refs_cam
                .iter()
                .enumerate()
                .filter(|(j, _)| Some(*j) != skip)
                .filter_map(|(_, e)| e.as_deref()),
        )
    };
    let cam_all = cam_centroid(None);

    let ref_embeddings: Vec<&[f32]> = refs.iter().map(|u| u.embedding.as_slice()).collect();
    let all_centroid = centroid(ref_embeddings.iter().copied());
    let mean_cosine = |e: &[f32], skip: Option<usize>| {
        let values: Vec<f64> = ref_embeddings
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != skip)
            .map(|(_, r)| cosine(e, r))
            .collect();
        Stat::of(&values).map(|s| s.mean)
    };
    let row = |clip: &Clip, u: &Utterance| ClipScore {
        id: clip.id.clone(),
        source: clip.source.clone(),
        seconds: clip.audio.seconds(),
        voiced_seconds: u.voiced_seconds,
        ap_centroid: None,
        ap_pairwise: None,
        ap_matched: None,
        campplus_centroid: None,
        quality: quality::measure(&clip.audio),
    };
    let candidates = candidates
        .iter()
        .zip(&cand)
        .zip(&cand_cam)
        .map(|((clip, u), cam)| ClipScore {
            ap_centroid: all_centroid.as_ref().map(|c| cosine(&u.embedding, c)),
            ap_pairwise: mean_cosine(&u.embedding, None),
            ap_matched: real.get(clip.id.as_str()).map(|r| cosine(&u.embedding, r)),
            campplus_centroid: cam
                .as_ref()
                .zip(cam_all.as_ref())
                .map(|(e, c)| cosine(e, c)),
            ..row(clip, u)
        })
        .collect();
    let references = references
        .iter()
        .zip(&refs)
        .enumerate()
        .map(|(i, (clip, u))| {
            let others = centroid(
                ref_embeddings
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, e)| *e),
            );
            let cam_others = cam_centroid(Some(i));
            ClipScore {
                ap_centroid: others.as_ref().map(|c| cosine(&u.embedding, c)),
                ap_pairwise: mean_cosine(&u.embedding, Some(i)),
                campplus_centroid: refs_cam[i]
                    .as_ref()
                    .zip(cam_others.as_ref())
                    .map(|(e, c)| cosine(e, c)),
                ..row(clip, u)
            }
        })
        .collect();
    Scored {
        candidates,
        references,
    }
}
