//! The metrics log: one JSON object per line (`metrics.jsonl`), flushed per record. On resume,
//! records of steps after the checkpoint are cut, so an interrupted-and-resumed run ends with
//! the same log as an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending, first keeping only records whose `step` is at most
    /// `resume_step` (all of them when None, none when Some(0) of a fresh run).
    pub fn open(path: &Path, resume_step: Option<usize>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let (Some(limit), Ok(text)) = (resume_step, std::fs::read_to_string(path)) {
            let kept: String = text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| limit > 0 && s as usize <= limit)
                })
                .map(|line| format!("{line}\n"))
                .collect();
            crate::atomic::write(path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (it must have a `step` field to be cut on resume).
    pub fn write<T: Serialize>(&mut self, record: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_cuts_later_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // A fresh start (a stage killed before its first checkpoint, rerun) keeps nothing, not
        // even a step-0 evaluation, which the rerun writes again.
        std::fs::write(&path, "{\"step\":0,\"eval_loss\":3.0}\n").unwrap();
        drop(MetricsLog::open(&path, Some(0)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let mut log = MetricsLog::open(&path, Some(0)).unwrap();
        for step in 1..=6 {
            log.write(&serde_json::json!({ "step": step, "loss": 1.0 / step as f64 }))
                .unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(&path, Some(4)).unwrap();
        log.write(&serde_json::json!({ "step": 5, "loss": 0.2 }))
            .unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(steps, [1, 2, 3, 4, 5]);
    }
}
