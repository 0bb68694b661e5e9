//! Writing files so that a crash never leaves a half-written one: write a temporary file beside
//! the target, sync it, rename it over the target, sync the directory.
//!
//! An output is only ever a regular file or a new name: a symbolic link, a FIFO, a device or a
//! directory in its place is refused, never replaced or written through (`check_target`).

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents` atomically (readers see the old file or the new one).
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    replace_with(path, |tmp| {
        let mut file = new_file(tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    })
}

/// Replaces `path` atomically with what `fill` writes to the temporary path it is given (a new
/// file there; `fill` creates it).
pub fn replace_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    check_target(path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A leftover of a crashed process with the same id (never followed if it is a link).
    let _ = std::fs::remove_file(&tmp);
    let written = fill(&tmp).and_then(|()| std::fs::File::open(&tmp)?.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable (a no-op where directories cannot be opened).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A file created at `path`, failing if anything (a link included) is already there.
pub fn new_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// `Ok` when `path` is free or a regular file; an error saying what is there otherwise (a
/// symbolic link, a FIFO, a device, a directory), so that an output never replaces or writes
/// through something that is not its own file.
pub fn check_target(path: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let kind = meta.file_type();
    let what = if kind.is_symlink() {
        "a symbolic link (give the path it points to, or a new name)"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        return Ok(());
    } else {
        "not a regular file (a FIFO, socket or device)"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}: outputs are written only as regular files",
            path.display()
        ),
    ))
}

/// Writes a whole directory atomically: `fill` writes into `.<name>.tmp-<pid>` beside `dir`; its
/// files are synced and it is renamed to `dir` (an older `dir` is replaced only once the new one
/// is complete).
pub fn write_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    fill(&tmp)?;
    for entry in std::fs::read_dir(&tmp)?.flatten() {
        std::fs::File::open(entry.path())?.sync_all()?;
    }
    if dir.exists() {
        let old = dir.with_file_name(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old)?;
        std::fs::rename(&tmp, dir)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, dir)?;
    }
    if let Some(parent) = dir.parent().and_then(|p| {
        std::fs::File::open(if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        })
        .ok()
    }) {
        let _ = parent.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/report.jsonl");
        super::write(&path, b"one").unwrap();
        super::write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.jsonl"]);
    }

    #[cfg(unix)]
    #[test]
    fn links_fifos_devices_and_directories_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, says) in [
            (link.as_path(), "a symbolic link"),
            (fifo.as_path(), "not a regular file"),
            (std::path::Path::new("/dev/full"), "not a regular file"),
            (dir.path(), "a directory"),
        ] {
            let err = super::write(path, b"new").unwrap_err().to_string();
            assert!(err.contains(says), "{path:?}: {err}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A link planted at the temporary name is removed, not written through.
        let planted = dir
            .path()
            .join(format!(".out.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        super::write(&dir.path().join("out.json"), b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
