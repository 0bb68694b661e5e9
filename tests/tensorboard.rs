//! An independent reader of TensorBoard event files (TensorFlow's record format: u64 length,
//! masked CRC-32C of it, an `Event` protobuf, masked CRC-32C of that), written from the format's
//! documentation with a bitwise CRC and a hand-rolled protobuf walk, so the tests check
//! arp-train's writer (prost + the crc crate) against something that shares no code with it.

use std::collections::BTreeMap;
use std::path::Path;

/// CRC-32C, bit by bit (reflected polynomial 0x82F63B78).
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// Spelled as TensorFlow's crc32c::Mask is (the writer uses rotate_right).
#[allow(clippy::manual_rotate)]
fn masked(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8)
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

/// (field number, wire type, payload) of each field of a protobuf message.
fn fields(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => {
                let v = varint(bytes, &mut at);
                v.to_le_bytes().to_vec()
            }
            1 => {
                at += 8;
                bytes[at - 8..at].to_vec()
            }
            2 => {
                let n = varint(bytes, &mut at) as usize;
                at += n;
                bytes[at - n..at].to_vec()
            }
            5 => {
                at += 4;
                bytes[at - 4..at].to_vec()
            }
            other => panic!("wire type {other}"),
        };
        out.push((field, wire, payload));
    }
    out
}

/// Every record's `Event`, checking both CRCs of each; the file must end on a whole record.
fn events(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let length = &bytes[at..at + 8];
        assert_eq!(
            u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
            masked(length),
            "{}: length CRC of the record at byte {at}",
            path.display()
        );
        let n = u64::from_le_bytes(length.try_into().unwrap()) as usize;
        let data = &bytes[at + 12..at + 12 + n];
        let crc = &bytes[at + 12 + n..at + 16 + n];
        assert_eq!(
            u32::from_le_bytes(crc.try_into().unwrap()),
            masked(data),
            "{}: data CRC of the record at byte {at}",
            path.display()
        );
        out.push(data.to_vec());
        at += 16 + n;
    }
    out
}

/// The file version and, per step, its scalars (tag -> value).
pub struct Scalars {
    pub file_version: String,
    pub steps: BTreeMap<i64, BTreeMap<String, f32>>,
}

pub fn read(path: &Path) -> Scalars {
    let mut file_version = String::new();
    let mut steps: BTreeMap<i64, BTreeMap<String, f32>> = BTreeMap::new();
    for event in events(path) {
        let mut step = 0i64;
        let mut values = Vec::new();
        for (field, wire, payload) in fields(&event) {
            match (field, wire) {
                (2, 0) => step = i64::from_le_bytes(payload.try_into().unwrap()),
                (3, 2) => file_version = String::from_utf8(payload).unwrap(),
                (5, 2) => {
                    for (f, _, value) in fields(&payload) {
                        assert_eq!(f, 1, "Summary.value");
                        let mut tag = String::new();
                        let mut simple = None;
                        for (vf, vw, p) in fields(&value) {
                            match (vf, vw) {
                                (1, 2) => tag = String::from_utf8(p).unwrap(),
                                (2, 5) => simple = Some(f32::from_le_bytes(p.try_into().unwrap())),
                                _ => {}
                            }
                        }
                        values.push((tag, simple.expect("a simple_value")));
                    }
                }
                _ => {}
            }
        }
        if !values.is_empty() {
            let at_step = steps.entry(step).or_default();
            for (tag, v) in values {
                assert!(
                    at_step.insert(tag.clone(), v).is_none(),
                    "{tag} twice at step {step}"
                );
            }
        }
    }
    Scalars {
        file_version,
        steps,
    }
}

/// The part's `metrics.jsonl` as TensorBoard should show it: per step, every number but `step`
/// (`eval_loss` as `eval/loss`, others as `train/<key>`), as f32.
pub fn expected_from_metrics(part_dir: &Path) -> BTreeMap<i64, BTreeMap<String, f32>> {
    let text = std::fs::read_to_string(part_dir.join("metrics.jsonl")).unwrap();
    let mut out: BTreeMap<i64, BTreeMap<String, f32>> = BTreeMap::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = record["step"].as_i64().unwrap();
        let at_step = out.entry(step).or_default();
        for (key, value) in record.as_object().unwrap() {
            if key == "step" {
                continue;
            }
            let tag = if key == "eval_loss" {
                "eval/loss".to_string()
            } else {
                format!("train/{key}")
            };
            at_step.insert(tag, value.as_f64().unwrap() as f32);
        }
    }
    out
}

/// Asserts that the part directory's event file holds exactly its metrics.jsonl.
pub fn assert_matches_metrics(part_dir: &Path) {
    let scalars = read(&part_dir.join("events.out.tfevents.arp-train"));
    assert_eq!(scalars.file_version, "brain.Event:2");
    let expected = expected_from_metrics(part_dir);
    assert!(!expected.is_empty(), "{}", part_dir.display());
    assert_eq!(scalars.steps, expected, "{}", part_dir.display());
}

#[test]
fn the_reader_checks_crcs_against_the_published_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}
