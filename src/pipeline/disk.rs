//! Disk usage of run directories: what the checkpoints of a stage take, and the whole run
//! (a file linked under two names counted once).

use std::collections::HashSet;
use std::path::Path;

/// Bytes under `path`; files already in `seen` (same inode) are not counted again.
fn usage(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        return std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| usage(&e.path(), seen)).sum())
            .unwrap_or(0);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !seen.insert((meta.dev(), meta.ino())) {
            return 0;
        }
    }
    meta.len()
}

pub fn size(path: &Path) -> u64 {
    usage(path, &mut HashSet::new())
}

pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 30 => format!("{:.2} GiB", b / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", b / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", b / 1024.0),
        n => format!("{n} B"),
    }
}

/// `N checkpoints (steps a, b), X` for a stage directory of step checkpoints.
pub fn checkpoints_line(dir: &Path, keep_last_n: usize) -> String {
    let listed = crate::train::checkpoints::Checkpoints::peek(dir).list();
    let bytes: u64 = listed.iter().map(|(_, d)| size(d)).sum();
    let steps: Vec<String> = listed.iter().map(|(s, _)| s.to_string()).collect();
    format!(
        "{} checkpoint{} kept (step {}; keep_last_n {keep_last_n}), {}",
        listed.len(),
        if listed.len() == 1 { "" } else { "s" },
        if steps.is_empty() {
            "-".into()
        } else {
            steps.join(", ")
        },
        human(bytes)
    )
}

/// The whole run directory and its top-level parts that hold anything, each counted on its own
/// and the total with files linked under two names counted once.
pub fn run_line(output_dir: &Path) -> String {
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(output_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        size(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    let listed: Vec<String> = parts
        .iter()
        .filter(|(_, bytes)| *bytes > 0)
        .map(|(name, bytes)| format!("{name} {}", human(*bytes)))
        .collect();
    format!(
        "disk: {} in {} ({})",
        human(size(output_dir)),
        output_dir.display(),
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_line_lists_the_parts_that_hold_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lm")).unwrap();
        std::fs::create_dir_all(dir.path().join("reports")).unwrap();
        std::fs::write(dir.path().join("lm/a.bin"), [0u8; 2048]).unwrap();
        let line = run_line(dir.path());
        assert!(line.ends_with("(lm 2.0 KiB)"), "{line}");
    }
}
