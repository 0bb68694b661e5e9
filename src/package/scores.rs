//! Recording `arp-train eval`'s scores in a package: the manifest's `scores` and the model
//! card's ARP-Eval section. The card is rewritten first and the manifest (with the card's new
//! size and hash) last, each atomically, so a crash leaves the old scores or the new ones.

use std::path::Path;

use super::{card, files, open, Manifest, CARD, MANIFEST, RECIPE};
use crate::recipe::{PathCheck, Recipe};

pub fn record(dir: &Path, scores: serde_json::Value) -> Result<Manifest, String> {
    let mut manifest =
        open(dir)?.ok_or_else(|| format!("{} is not an ARP-Model package", dir.display()))?;
    let recipe = Recipe::load(&dir.join(RECIPE), &[], PathCheck::Lenient)
        .map_err(|e| format!("{}: {e}", dir.join(RECIPE).display()))?
        .recipe;
    manifest.scores = Some(scores);
    let card_path = dir.join(CARD);
    crate::atomic::write(&card_path, card::render(&manifest, &recipe).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", card_path.display()))?;
    let bytes = std::fs::metadata(&card_path)
        .map_err(|e| e.to_string())?
        .len();
    let sha256 = files::sha256_file(&card_path).map_err(|e| e.to_string())?;
    if let Some(entry) = manifest.files.iter_mut().find(|f| f.path == CARD) {
        entry.bytes = bytes;
        entry.sha256 = sha256;
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    crate::atomic::write(&dir.join(MANIFEST), &json)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(MANIFEST).display()))?;
    Ok(manifest)
}
