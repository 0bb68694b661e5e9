//! Step checkpoints of one stage: `<stage dir>/step-000120/`, written atomically (a temporary
//! directory, synced, renamed), a `latest` pointer updated after the rename, and pruning to the
//! newest `keep_last_n` only once the new checkpoint is complete. A run killed at any moment
//! leaves the previous checkpoint loadable: `latest()` trusts the pointer only when it names a
//! complete checkpoint, and falls back to the newest complete one.

use std::path::{Path, PathBuf};

pub struct Checkpoints {
    dir: PathBuf,
    keep_last_n: usize,
}

fn step_name(step: usize) -> String {
    format!("step-{step:06}")
}

fn parse_step(name: &str) -> Option<usize> {
    name.strip_prefix("step-")?.parse().ok()
}

/// A checkpoint is complete when its directory has this file (written last, inside the
/// temporary directory, before the rename).
pub const COMPLETE_MARKER: &str = "complete";

impl Checkpoints {
    /// Opens (creating) a stage's checkpoint directory and removes temporaries of killed runs.
    pub fn open(dir: &Path, keep_last_n: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-")) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Checkpoints {
            dir: dir.to_path_buf(),
            keep_last_n: keep_last_n.max(1),
        })
    }

    /// A stage's checkpoints as they are, for looking only (creates and removes nothing).
    pub fn peek(dir: &Path) -> Self {
        Checkpoints {
            dir: dir.to_path_buf(),
            keep_last_n: usize::MAX,
        }
    }

    /// Complete checkpoints, oldest first, as (step, dir).
    pub fn list(&self) -> Vec<(usize, PathBuf)> {
        let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|r| {
                r.flatten()
                    .filter_map(|e| {
                        let step = parse_step(&e.file_name().to_string_lossy())?;
                        e.path()
                            .join(COMPLETE_MARKER)
                            .is_file()
                            .then(|| (step, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The checkpoint to resume from: the `latest` pointer's if complete, else the newest one.
    pub fn latest(&self) -> Option<(usize, PathBuf)> {
        let listed = self.list();
        let pointed = std::fs::read_to_string(self.dir.join("latest"))
            .ok()
            .and_then(|name| {
                let name = name.trim();
                let step = parse_step(name)?;
                listed.iter().find(|(s, _)| *s == step).cloned()
            });
        pointed.or_else(|| listed.last().cloned())
    }

    /// Where the checkpoint of `step` is (or will be) written.
    pub fn step_dir(&self, step: usize) -> PathBuf {
        self.dir.join(step_name(step))
    }

    /// Writes the checkpoint of `step`: `fill` writes its files into a temporary directory.
    pub fn save(
        &self,
        step: usize,
        fill: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> std::io::Result<PathBuf> {
        let dir = self.step_dir(step);
        crate::atomic::write_dir(&dir, |tmp| {
            fill(tmp)?;
            std::fs::write(tmp.join(COMPLETE_MARKER), format!("{step}\n"))
        })?;
        crate::atomic::write(&self.dir.join("latest"), step_name(step).as_bytes())?;
        let listed = self.list();
        if listed.len() > self.keep_last_n {
            for (_, old) in &listed[..listed.len() - self.keep_last_n] {
                std::fs::remove_dir_all(old)?;
            }
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_survives_a_crash_mid_save() {
        let root = tempfile::tempdir().unwrap();
        let stage = root.path().join("lm");
        let ckpt = Checkpoints::open(&stage, 2).unwrap();
        for step in [4, 8, 12] {
            ckpt.save(step, |dir| {
                std::fs::write(dir.join("weights"), format!("{step}"))
            })
            .unwrap();
        }
        let steps: Vec<usize> = ckpt.list().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [8, 12]);
        assert_eq!(ckpt.latest().unwrap().0, 12);

        // A save that dies while writing leaves a temporary directory and no new checkpoint.
        let err = ckpt.save(16, |dir| {
            std::fs::write(dir.join("weights"), "partial")?;
            Err(std::io::Error::other("killed"))
        });
        assert!(err.is_err());
        assert_eq!(ckpt.latest().unwrap().0, 12);
        // A directory without the completion marker (killed between files) is not a checkpoint,
        // and a pointer naming a missing checkpoint is not trusted.
        std::fs::create_dir_all(stage.join("step-000020")).unwrap();
        std::fs::write(stage.join("latest"), "step-000020").unwrap();
        assert_eq!(ckpt.latest().unwrap().0, 12);
        let reopened = Checkpoints::open(&stage, 2).unwrap();
        assert!(!std::fs::read_dir(&stage)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".tmp-")));
        assert_eq!(
            std::fs::read_to_string(reopened.latest().unwrap().1.join("weights")).unwrap(),
            "12"
        );
    }
}
