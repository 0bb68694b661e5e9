//! Token generation with a KV cache: greedy, or temperature + top-p sampling (seeded).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::model::{ChatGlmModel, KvCache};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    Greedy,
    TopP {
        temperature: f64,
        top_p: f64,
        seed: u64,
    },
}

fn pick(logits: &[f32], sampling: Sampling, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    match sampling {
        Sampling::Greedy => argmax(),
        Sampling::TopP { temperature, .. } if temperature <= 0.0 => argmax(),
        Sampling::TopP {
            temperature, top_p, ..
        } => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let mut probs: Vec<(u32, f64)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l as f64 - max) / temperature).exp()))
                .collect();
            let total: f64 = probs.iter().map(|p| p.1).sum();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1));
            let mut kept = Vec::new();
            let mut mass = 0.0;
            for (id, p) in probs {
                kept.push((id, p / total));
                mass += p / total;
                if mass >= top_p {
                    break;
                }
            }
            let mut u = rng.uniform() * mass;
            for (id, p) in &kept {
                if u < *p {
                    return *id;
                }
                u -= p;
            }
            kept.last().map_or(0, |k| k.0)
        }
    }
}

/// Generates up to `max_new` tokens after `prompt`, stopping after any of `stop` (which is
/// included in the output).
pub fn generate<B: Backend>(
    model: &ChatGlmModel<B>,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    sampling: Sampling,
    device: &B::Device,
) -> Vec<u32> {
    let mut rng = Rng::from_state(match sampling {
        Sampling::TopP { seed, .. } => seed.max(1),
        Sampling::Greedy => 1,
    });
    let mut cache: KvCache<B> = Vec::new();
    let mut input: Vec<u32> = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..max_new {
        let ids: Vec<i64> = input.iter().map(|&t| t as i64).collect();
        let len = ids.len();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), device);
        let logits = model.forward_cached(ids, &mut cache);
        let vocab = logits.dims()[2];
        let last = crate::models::to_host_f32(logits.narrow(1, len - 1, 1).reshape([vocab]));
        let next = pick(&last, sampling, &mut rng);
        out.push(next);
        if stop.contains(&next) {
            break;
        }
        input = vec![next];
    }
    out
}
