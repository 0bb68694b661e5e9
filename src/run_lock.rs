//! One run per directory. A run takes `<output_dir>/.arp-train.lock` before it writes
//! anything. The lock holds the owner's pid, host, start time and command line, and is removed
//! when the run ends. A second run on the same directory is refused and told who holds it. A
//! lock left by a run that was killed on this host (its pid is gone) is taken over, with a
//! warning.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock's file name in a run directory.
pub const LOCK_FILE: &str = ".arp-train.lock";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub command: String,
}

impl Holder {
    fn this_process() -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    /// Whether the holder is certainly gone: a process of this host that no longer exists.
    /// Another host's process cannot be checked, and counts as alive.
    fn is_gone(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        // After a container restart the old holder's pid can be ours.
        self.pid == std::process::id() || !process_exists(self.pid)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether `pid` runs (a zombie, killed but not yet reaped by its parent, does not).
#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn process_exists(_pid: u32) -> bool {
    true // cannot tell: never take over
}

/// The lock of one run directory; dropping it releases the directory.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock of run directory `dir` (created if missing), or says who holds it.
pub fn acquire(dir: &Path) -> Result<RunLock, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let me = Holder::this_process();
    let text = serde_json::to_string_pretty(&me).expect("a holder serializes");
    // Written whole under a private name, then linked into place: linking fails if the lock
    // exists, so exactly one of two racing runs gets it, and nobody ever reads a half-written
    // lock.
    let staging = dir.join(format!("{LOCK_FILE}.{}", me.pid));
    std::fs::write(&staging, &text)
        .map_err(|e| format!("cannot write {}: {e}", staging.display()))?;
    let taken = (|| {
        for _ in 0..2 {
            match std::fs::hard_link(&staging, &path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(&path)?;
                    if !holder.is_gone() {
                        return Err(held_message(dir, &path, &holder));
                    }
                    tracing::warn!(
                        pid = holder.pid,
                        lock = %path.display(),
                        "taking over the lock of a run that is gone (killed?)"
                    );
                    std::fs::remove_file(&path)
                        .map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "{} keeps reappearing: another run is starting in {}",
            path.display(),
            dir.display()
        ))
    })();
    let _ = std::fs::remove_file(&staging);
    taken.map(|()| RunLock { path })
}

fn read_holder(path: &Path) -> Result<Holder, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not an arp-train lock ({e}); if no run uses this directory, delete it",
            path.display()
        )
    })
}

fn held_message(dir: &Path, path: &Path, holder: &Holder) -> String {
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(holder.started);
    let age = match age {
        a if a < 120 => format!("{a} s"),
        a if a < 7200 => format!("{} min", a / 60),
        a => format!("{:.1} h", a as f64 / 3600.0),
    };
    format!(
        "another run is using {}: pid {} on host {}, started {age} ago (`{}`). Wait for it to \
         finish or choose another --output. If that run is gone (its machine rebooted), delete {}",
        dir.display(),
        holder.pid,
        holder.host,
        holder.command,
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_held_lock_is_refused_and_a_gone_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let lock = acquire(dir.path()).unwrap();
        assert_eq!(read_holder(&path).unwrap().pid, std::process::id());
        drop(lock);
        assert!(!path.exists(), "released on drop");

        // A live process of this host holds it (pid 1 always exists): refused, holder named.
        let mut other = Holder::this_process();
        other.pid = 1;
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let err = acquire(dir.path()).unwrap_err();
        assert!(
            err.contains("pid 1 on host") && err.contains("delete"),
            "{err}"
        );

        // A process that no longer exists: taken over (pid_max is at most 2^22 on Linux).
        other.pid = 1 << 23;
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let lock = acquire(dir.path()).unwrap();
        assert_eq!(read_holder(&path).unwrap().pid, std::process::id());
        drop(lock);

        // A killed run that its parent has not reaped yet (a zombie) is gone too.
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        let start = std::time::Instant::now();
        while process_exists(zombie.id()) && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            Path::new(&format!("/proc/{}", zombie.id())).exists(),
            "not reaped yet"
        );
        other.pid = zombie.id();
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        drop(acquire(dir.path()).unwrap());
        zombie.wait().unwrap();

        // Another host's process cannot be checked: refused.
        other.host = "elsewhere".into();
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let err = acquire(dir.path()).unwrap_err();
        assert!(err.contains("host elsewhere"), "{err}");
    }
}
