//! Named tensors from safetensors files, looked up by exact name across one or more files (a
//! model directory's shards), with errors that name the tensor and the file: missing tensor,
//! wrong shape (both shapes printed), unsupported dtype. Names never asked for can be listed, so
//! loaders can warn about unexpected extras.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors};

#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("no safetensors files matching {pattern} in {dir}")]
    NoFiles { dir: PathBuf, pattern: String },
    #[error("tensor `{name}` is missing from {files}")]
    Missing { name: String, files: String },
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        path: PathBuf,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` in {path} has dtype {dtype:?}; supported: F32, F16, BF16, F64")]
    Dtype {
        name: String,
        path: PathBuf,
        dtype: Dtype,
    },
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the file's buffer.
    range: (usize, usize),
}

/// Anything that hands out named f32 tensors of a given shape: a checkpoint on disk, or (in
/// benchmarks) random weights of a real model's shape.
pub trait TensorSource {
    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TensorError>;
    /// Whether a tensor of this name exists (used to tell weight-norm pairs from plain weights).
    fn contains(&self, _name: &str) -> bool {
        false
    }
}

impl TensorSource for TensorStore {
    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TensorError> {
        TensorStore::f32(self, name, expected)
    }
    fn contains(&self, name: &str) -> bool {
        TensorStore::contains(self, name)
    }
}

/// The tensors of one checkpoint, possibly spread over several files. Files are memory-mapped:
/// loading a model reads each tensor once from the page cache, so the host never holds a second
/// full copy of the weights.
pub struct TensorStore {
    files: Vec<(PathBuf, memmap2::Mmap)>,
    entries: BTreeMap<String, Entry>,
    used: RefCell<BTreeSet<String>>,
}

impl TensorStore {
    /// Opens these files (later files may not repeat a name of an earlier one).
    pub fn open(paths: &[PathBuf]) -> Result<Self, TensorError> {
        let mut files = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, path) in paths.iter().enumerate() {
            let io = |source| TensorError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            // SAFETY: the map is read-only; like every safetensors loader, this assumes the file is
            // not truncated by another process while the model loads.
            let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
            let format = |message: String| TensorError::Format {
                path: path.clone(),
                message,
            };
            let (header, metadata) =
                SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
            let data_start = 8 + header;
            for (name, info) in metadata.tensors() {
                let range = (
                    data_start + info.data_offsets.0,
                    data_start + info.data_offsets.1,
                );
                if range.1 > bytes.len() {
                    return Err(format(format!(
                        "tensor `{name}` runs past the end of the file (truncated?)"
                    )));
                }
                if entries.contains_key(&name) {
                    return Err(format(format!(
                        "tensor `{name}` appears in more than one file"
                    )));
                }
                entries.insert(
                    name,
                    Entry {
                        file: index,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        range,
                    },
                );
            }
            files.push((path.clone(), bytes));
        }
        Ok(TensorStore {
            files,
            entries,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// Opens every `<prefix>*.safetensors` file of `dir`, sorted by name.
    pub fn open_dir(dir: &Path, prefix: &str) -> Result<Self, TensorError> {
        let read = std::fs::read_dir(dir).map_err(|source| TensorError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.starts_with(prefix) && name.ends_with(".safetensors")
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(TensorError::NoFiles {
                dir: dir.to_path_buf(),
                pattern: format!("{prefix}*.safetensors"),
            });
        }
        Self::open(&paths)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    fn file_list(&self) -> String {
        self.files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The entry of `name` if it has the `expected` shape and a supported dtype; marks it used.
    fn checked(&self, name: &str, expected: &[usize]) -> Result<&Entry, TensorError> {
        let entry = self.entries.get(name).ok_or_else(|| TensorError::Missing {
            name: name.to_string(),
            files: self.file_list(),
        })?;
        let path = &self.files[entry.file].0;
        if entry.shape != expected {
            return Err(TensorError::Shape {
                name: name.to_string(),
                path: path.clone(),
                found: entry.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        if !matches!(
            entry.dtype,
            Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16
        ) {
            return Err(TensorError::Dtype {
                name: name.to_string(),
                path: path.clone(),
                dtype: entry.dtype,
            });
        }
        self.used.borrow_mut().insert(name.to_string());
        Ok(entry)
    }

    /// Checks that `name` exists with the `expected` shape and a supported dtype, from the
    /// header alone (the data range was checked against the file's size when it was opened).
    pub fn check(&self, name: &str, expected: &[usize]) -> Result<(), TensorError> {
        self.checked(name, expected).map(|_| ())
    }

    /// The tensor `name` as f32 values, checked against `expected` shape.
    pub fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, TensorError> {
        let entry = self.checked(name, expected)?;
        let bytes = &self.files[entry.file].1[entry.range.0..entry.range.1];
        Ok(match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// Tensors present in the files that no `f32` call asked for.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.entries
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}
