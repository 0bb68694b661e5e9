//! A graceful stop on SIGINT (Ctrl-C) and SIGTERM (cluster preemption). The first signal asks
//! the work to stop at its next safe point: a training loop finishes the step in progress,
//! writes a checkpoint and returns; prepare finishes the clips in hand (they are cached). The
//! process then exits with 128 + the signal's number (130, 143), and rerunning the same command
//! continues bit-identically. A second signal ends the process at once; checkpoints are written
//! atomically, so the previous one is intact either way.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received, or 0.
static REQUESTED: AtomicI32 = AtomicI32::new(0);

const NOTICE: &[u8] = b"\narp-train: stopping after the current step with a checkpoint; \
signal again to stop at once (the previous checkpoint stays intact)\n";

extern "C" fn on_signal(signal: libc::c_int) {
    if REQUESTED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: _exit is async-signal-safe; nothing is flushed or unwound, by design.
        unsafe { libc::_exit(128 + signal) };
    }
    // SAFETY: write(2) is async-signal-safe; the buffer is a static.
    unsafe { libc::write(2, NOTICE.as_ptr().cast(), NOTICE.len()) };
}

/// Installs the handlers for SIGINT and SIGTERM (for the commands that train or prepare).
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain sigaction with a handler that only touches an atomic and calls
        // async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal that asked for a stop, if one did.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The exit code of a process stopped by `signal`, as shells report a signalled one.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// What a training loop reports once it has stopped at `step` with a checkpoint in `dir`.
pub fn stopped_training(part: &str, step: usize, total: usize, dir: &Path) -> String {
    let signal = requested().map_or("a signal", signal_name);
    format!(
        "{part} stopped by {signal} after step {step} of {total}; its checkpoint is in {}. \
         Rerun the same command to continue from it.",
        dir.display()
    )
}
