//! File plumbing of package assembly: copies (never hard links, so editing a package file
//! cannot edit the base model or run output it came from) and SHA-256 listings users can verify.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Copies `src` to `dst`, creating `dst`'s directory. `std::fs::copy` uses `copy_file_range`
/// on Linux, which shares the blocks copy-on-write (a reflink) on file systems that can (btrfs,
/// XFS), so a 9B model costs no time or space there and is still an independent file.
pub fn copy_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(src, dst).map(|_| ())
}

/// Every regular file under `src` (hidden entries skipped), copied to the same relative path
/// under `dst`, with a progress bar (`what`) measured in bytes.
pub fn copy_tree(src: &Path, dst: &Path, what: &'static str) -> std::io::Result<()> {
    let files = list_files(src)?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(src.join(f)).map_or(0, |m| m.len()))
        .sum();
    let bar = crate::progress::bar(total, what);
    for relative in files {
        let from = src.join(&relative);
        copy_file(&from, &dst.join(&relative))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
        bar.inc(std::fs::metadata(&from).map_or(0, |m| m.len()));
    }
    bar.finish_and_clear();
    Ok(())
}

/// Regular files under `root`, relative to it, sorted; hidden files and directories skipped.
pub fn list_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&relative))? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            let path = relative.join(&name);
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() || entry.path().is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileEntry {
    /// Relative to the package directory, with `/` separators.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Size and SHA-256 of every file under `root` except `skip` (a progress bar for big trees).
pub fn listing(root: &Path, skip: &[&str]) -> std::io::Result<Vec<FileEntry>> {
    let files: Vec<PathBuf> = list_files(root)?
        .into_iter()
        .filter(|p| !skip.iter().any(|s| p == Path::new(s)))
        .collect();
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(root.join(f)).map_or(0, |m| m.len()))
        .sum();
    let bar = crate::progress::bar(total, "hashing package");
    let mut out = Vec::with_capacity(files.len());
    for relative in files {
        let path = root.join(&relative);
        let bytes = std::fs::metadata(&path)?.len();
        out.push(FileEntry {
            path: relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/"),
            bytes,
            sha256: sha256_file(&path)?,
        });
        bar.inc(bytes);
    }
    bar.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        std::fs::write(&file, "abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn trees_are_copied_without_hidden_entries_and_share_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join("a.json"), "{}").unwrap();
        std::fs::write(src.join("sub/b.bin"), "bb").unwrap();
        std::fs::write(src.join(".git/config"), "x").unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst, "copying").unwrap();
        let listed = listing(&dst, &[]).unwrap();
        let paths: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.json", "sub/b.bin"]);
        assert_eq!(listed[1].bytes, 2);
        std::fs::write(dst.join("a.json"), "{\"edited\": 1}").unwrap();
        assert_eq!(std::fs::read_to_string(src.join("a.json")).unwrap(), "{}");
    }
}
