//! Recording `arp-train eval`'s scores in a package: the manifest's `scores`, the model card's
//! ARP-Eval section and the eval plot (`plots/eval.svg`). The plot and the card are written
//! first and the manifest (with their new sizes and hashes) last, each atomically, so a crash
//! leaves the old scores or the new ones.

use std::path::Path;

use super::{card, files, open, Manifest, CARD, EVAL_PLOT, MANIFEST, RECIPE};
use crate::recipe::{PathCheck, Recipe};

pub fn record(dir: &Path, scores: serde_json::Value, plot: &[u8]) -> Result<Manifest, String> {
    let mut manifest =
        open(dir)?.ok_or_else(|| format!("{} is not an ARP-Model package", dir.display()))?;
    let recipe = Recipe::load(&dir.join(RECIPE), &[], PathCheck::Lenient)
        .map_err(|e| format!("{}: {e}", dir.join(RECIPE).display()))?
        .recipe;
    manifest.scores = Some(scores);
    let plot_path = dir.join(EVAL_PLOT);
    std::fs::create_dir_all(dir.join("plots"))
        .and_then(|_| crate::atomic::write(&plot_path, plot))
        .map_err(|e| format!("cannot write {}: {e}", plot_path.display()))?;
    let card_path = dir.join(CARD);
    crate::atomic::write(&card_path, card::render(&manifest, &recipe).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", card_path.display()))?;
    for (name, path) in [(EVAL_PLOT, &plot_path), (CARD, &card_path)] {
        let entry = files::FileEntry {
            path: name.to_string(),
            bytes: std::fs::metadata(path).map_err(|e| e.to_string())?.len(),
            sha256: files::sha256_file(path).map_err(|e| e.to_string())?,
        };
        match manifest.files.iter_mut().find(|f| f.path == name) {
            Some(existing) => *existing = entry,
            None => manifest.files.push(entry),
        }
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    crate::atomic::write(&dir.join(MANIFEST), &json)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(MANIFEST).display()))?;
    Ok(manifest)
}
