//! Directory listings in a stable order (by path), so that every command sees inputs in the
//! same order on every file system, and the extension test that picks files out of them.

use std::path::{Path, PathBuf};

/// The entries directly in `dir`, sorted; an error names the directory.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

/// Whether `path`'s extension is one of `extensions` (lower case), in any case.
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}
