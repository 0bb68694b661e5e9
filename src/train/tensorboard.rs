//! A part's TensorBoard event file, written live beside its `metrics.jsonl` with the same
//! scalars, so `tensorboard --logdir <output_dir>` (one run per part: `lm`, `decoder/flow`,
//! `decoder/hift`) and `wandb sync --sync-tensorboard` read a run while it trains.
//!
//! The format is TensorFlow's record file: per record, the data's length (u64, little-endian),
//! its masked CRC-32C, the data (an `Event` protobuf), and the data's masked CRC-32C. The first
//! event names the file version. One file per part with a fixed name: a resumed run rewrites it
//! without the steps after its checkpoint (as [`super::metrics::MetricsLog`] does), so the
//! curve has no duplicate or orphaned points.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The part's event file name; TensorBoard reads every file whose name contains "tfevents".
pub const FILE: &str = "events.out.tfevents.arp-train";
const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event`, the fields written here.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "EventKind", tags = "3, 5")]
    pub what: Option<EventKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventKind {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a scalar. `simple_value` is a oneof member upstream, so it is
/// written even when it is 0 (a plain proto3 float would omit it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CASTAGNOLI.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The events of a record file, up to the first incomplete or corrupt record (the tail a crash
/// mid-write leaves).
pub fn read_events(bytes: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let length = &bytes[at..at + 8];
        let stored = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if stored != masked_crc(length) {
            break;
        }
        let n = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
        let Some(end) = (at + 12).checked_add(n).filter(|e| e + 4 <= bytes.len()) else {
            break;
        };
        let data = &bytes[at + 12..end];
        let stored = u32::from_le_bytes(bytes[end..end + 4].try_into().expect("4 bytes"));
        if stored != masked_crc(data) {
            break;
        }
        match <Event as prost::Message>::decode(data) {
            Ok(event) => events.push(event),
            Err(_) => break,
        }
        at = end + 4;
    }
    events
}

/// The scalars of one `metrics.jsonl` record, tagged for TensorBoard: `eval_loss` as
/// `eval/loss`, every other number but `step` as `train/<key>`.
pub fn scalars_of(record: &serde_json::Value) -> Vec<(String, f32)> {
    let Some(map) = record.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(key, _)| key.as_str() != "step")
        .filter_map(|(key, value)| {
            let tag = match key.as_str() {
                "eval_loss" => "eval/loss".to_string(),
                other => format!("train/{other}"),
            };
            value.as_f64().map(|v| (tag, v as f32))
        })
        .collect()
}

pub struct EventWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl EventWriter {
    /// Opens `dir`'s event file for appending, first keeping only events whose step is at most
    /// `resume_step` (all when None, none but the version header when Some(0)).
    pub fn open(dir: &Path, resume_step: Option<usize>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let existing = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let kept: Vec<Event> = existing
            .map(|bytes| read_events(&bytes))
            .unwrap_or_default()
            .into_iter()
            .filter(|e| match (&e.what, resume_step) {
                (Some(EventKind::FileVersion(_)), _) => false,
                (_, None) => true,
                (_, Some(limit)) => limit > 0 && e.step >= 0 && e.step as usize <= limit,
            })
            .collect();
        let header = Event {
            wall_time: now(),
            step: 0,
            what: Some(EventKind::FileVersion(FILE_VERSION.into())),
        };
        let mut bytes = Vec::new();
        for event in std::iter::once(&header).chain(&kept) {
            bytes.extend(record(&prost::Message::encode_to_vec(event)));
        }
        crate::atomic::write(&path, &bytes)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(EventWriter { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event with `scalars` at `step`, flushed to the file.
    pub fn write(&mut self, step: usize, scalars: Vec<(String, f32)>) -> std::io::Result<()> {
        if scalars.is_empty() {
            return Ok(());
        }
        let event = Event {
            wall_time: now(),
            step: step as i64,
            what: Some(EventKind::Summary(Summary {
                value: scalars
                    .into_iter()
                    .map(|(tag, v)| SummaryValue {
                        tag,
                        simple_value: Some(v),
                    })
                    .collect(),
            })),
        };
        self.file
            .write_all(&record(&prost::Message::encode_to_vec(&event)))?;
        self.file.flush()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(dir: &Path) -> Vec<i64> {
        read_events(&std::fs::read(dir.join(FILE)).unwrap())
            .iter()
            .filter(|e| matches!(e.what, Some(EventKind::Summary(_))))
            .map(|e| e.step)
            .collect()
    }

    #[test]
    fn resume_cuts_later_steps_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open(dir.path(), Some(0)).unwrap();
        for step in 0..=6 {
            w.write(step, vec![("train/loss".into(), 1.0 / (step + 1) as f32)])
                .unwrap();
        }
        drop(w);
        // A crash mid-write: half a record at the end.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&record(b"torn")[..9]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(steps(dir.path()), [0, 1, 2, 3, 4, 5, 6]);
        drop(EventWriter::open(dir.path(), Some(4)).unwrap());
        assert_eq!(steps(dir.path()), [0, 1, 2, 3, 4]);
        assert!(std::fs::metadata(&path).unwrap().len() < whole as u64);
        drop(EventWriter::open(dir.path(), Some(0)).unwrap());
        assert_eq!(steps(dir.path()), Vec::<i64>::new());
    }

    #[test]
    fn masked_crc_matches_tensorflow() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720's check value), masked as TensorFlow's
        // crc32c::Mask does: rotate right by 15, add 0xa282ead8.
        assert_eq!(CASTAGNOLI.checksum(b"123456789"), 0xE306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn a_zero_scalar_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open(dir.path(), None).unwrap();
        w.write(3, vec![("train/skipped_steps".into(), 0.0)])
            .unwrap();
        let events = read_events(&std::fs::read(dir.path().join(FILE)).unwrap());
        let Some(EventKind::Summary(s)) = &events[1].what else {
            panic!("{events:?}")
        };
        assert_eq!(s.value[0].simple_value, Some(0.0));
    }
}
