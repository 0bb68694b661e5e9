//! The run's log, `<output_dir>/logs/run.log`: the stage summaries printed on stdout and the
//! tracing events shown on stderr (without colors), appended by every invocation on the run
//! directory, so the directory tells its own history.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static SINK: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

/// Starts appending to `<output_dir>/logs/run.log` (replacing an earlier sink).
pub fn open(output_dir: &Path) -> std::io::Result<PathBuf> {
    let path = output_dir.join("logs").join("run.log");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), file));
    Ok(path)
}

/// Stops writing to the log file.
pub fn close() {
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn append(bytes: &[u8]) {
    if let Some((_, file)) = SINK.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = file.write_all(bytes);
    }
}

/// Keeps a line in the log only (it was shown elsewhere, e.g. as the command's error).
pub fn record(text: impl AsRef<str>) {
    append(format!("{}\n", text.as_ref()).as_bytes());
}

/// Prints a line of the run's summary on stdout and keeps it in the log.
pub fn say(text: impl AsRef<str>) {
    let text = text.as_ref();
    crate::progress::println_stdout(text);
    let mut line = text.to_string();
    line.push('\n');
    append(line.as_bytes());
}

/// A `tracing_subscriber` writer into the log file (writes nothing while none is open).
pub struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
