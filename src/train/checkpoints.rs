//! Step checkpoints of one stage: `<stage dir>/step-000120/`, written atomically (a temporary
//! directory, synced, renamed), a `latest` pointer updated after the rename, and pruning to the
//! newest `keep_last_n` only once the new checkpoint is complete. A run killed at any moment
//! leaves the previous checkpoint loadable: `latest()` trusts the pointer only when it names a
//! complete checkpoint, and falls back to the newest complete one.

use std::path::{Path, PathBuf};

use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::Backend;

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
    /// A failure says what failed, where, and which earlier checkpoint is intact.
    pub fn save(
        &self,
        step: usize,
        fill: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<PathBuf, String> {
        let dir = self.step_dir(step);
        let previous = self.latest();
        crate::atomic::write_dir(&dir, |tmp| {
            fill(tmp)?;
            std::fs::write(tmp.join(COMPLETE_MARKER), format!("{step}\n"))
        })
        .and_then(|()| crate::atomic::write(&self.dir.join("latest"), step_name(step).as_bytes()))
        .map_err(|e| save_failure(&dir, previous, &e))?;
        let listed = self.list();
        if listed.len() > self.keep_last_n {
            for (_, old) in &listed[..listed.len() - self.keep_last_n] {
                std::fs::remove_dir_all(old).map_err(|e| {
                    format!("cannot remove the old checkpoint {}: {e}", old.display())
                })?;
            }
        }
        Ok(dir)
    }
}

fn save_failure(dir: &Path, previous: Option<(usize, PathBuf)>, e: &std::io::Error) -> String {
    let intact = match previous {
        Some((step, path)) => format!(
            "the previous checkpoint (step {step}, {}) is intact",
            path.display()
        ),
        None => "no earlier checkpoint exists yet".to_string(),
    };
    if e.kind() == std::io::ErrorKind::StorageFull {
        format!(
            "no space left on device while writing the checkpoint {}; {intact}. Free some space and rerun the same command to continue.",
            dir.display()
        )
    } else {
        format!(
            "cannot write the checkpoint {}: {e}; {intact}",
            dir.display()
        )
    }
}

/// Writes a burn record (optimizer state) to `<path>.bin` in the format burn's `BinFileRecorder`
/// writes and loads (the same bincode; only the recorder's name in the metadata differs).
/// burn's file recorder drops its buffered writer without checking the final flush, so a full
/// disk could leave a short file; `std::fs::write` reports every failed write, with its kind.
pub fn write_record<B: Backend, R: Record<B>>(record: R, path: &Path) -> std::io::Result<()> {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<B>::record(&recorder, record, ()).map_err(std::io::Error::other)?;
    std::fs::write(path.with_extension("bin"), bytes)
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
        // A full disk is said as such, with the checkpoint that is intact.
        let err = ckpt
            .save(24, |_| std::fs::write("/dev/full", [0u8; 4096]))
            .unwrap_err();
        assert!(
            err.starts_with("no space left on device while writing the checkpoint"),
            "{err}"
        );
        assert!(err.contains("the previous checkpoint (step 12"), "{err}");
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

    #[test]
    fn records_written_here_load_with_the_bin_file_recorder() {
        use burn::record::{BinFileRecorder, Recorder};
        type Cpu = burn::backend::NdArray<f32>;
        let dir = tempfile::tempdir().unwrap();
        let item: Vec<f32> = (0..5000).map(|i| i as f32 * 0.25).collect();
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        Recorder::<Cpu>::record(&recorder, item.clone(), dir.path().join("burn")).unwrap();
        write_record::<Cpu, _>(item.clone(), &dir.path().join("ours")).unwrap();
        let loaded: Vec<f32> =
            Recorder::<Cpu>::load(&recorder, dir.path().join("ours"), &Default::default()).unwrap();
        assert_eq!(loaded, item);

        std::os::unix::fs::symlink("/dev/full", dir.path().join("full.bin")).unwrap();
        let err = write_record::<Cpu, _>(item, &dir.path().join("full")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    }
}
