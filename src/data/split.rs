//! The held-out split, the same for stage one's samples, stage two's utterances and the plan:
//! the items whose seeded hash of the id is smallest are held out, so the split depends only
//! on the ids and the seed, never on file order.

use super::cache::stable_hash;
use crate::recipe::ValidationSplit;

/// Items held out for evaluation out of `n` (none below two items: one must train).
pub fn validation_count(n: usize, split: &ValidationSplit) -> usize {
    if n < 2 {
        return 0;
    }
    ((n as f64 * split.fraction).round() as usize)
        .max(split.min_items)
        .min(n - 1)
}

/// Splits `items` into (train, held out): the training items sorted by id, the held-out ones
/// in hash order.
pub fn train_and_held_out<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    seed: u64,
    split: &ValidationSplit,
) -> (Vec<T>, Vec<T>) {
    items.sort_by_cached_key(|item| stable_hash(&[id(item).as_bytes(), &seed.to_le_bytes()]));
    let held_out = validation_count(items.len(), split);
    let mut train = items.split_off(held_out);
    train.sort_by(|a, b| id(a).cmp(id(b)));
    (train, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_depends_on_ids_and_seed_not_on_order() {
        let split = ValidationSplit {
            fraction: 0.25,
            min_items: 1,
        };
        let ids: Vec<String> = (0..12).map(|i| format!("u{i:02}")).collect();
        let (train, held) = train_and_held_out(ids.clone(), |s| s, 7, &split);
        assert_eq!((train.len(), held.len()), (9, 3));
        let mut reversed = ids.clone();
        reversed.reverse();
        assert_eq!(
            train_and_held_out(reversed, |s| s, 7, &split),
            (train.clone(), held.clone())
        );
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        let (_, other_seed) = train_and_held_out(ids, |s| s, 8, &split);
        assert_ne!(other_seed, held);
        assert_eq!(validation_count(1, &split), 0);
        assert_eq!(validation_count(2, &split), 1);
    }
}
