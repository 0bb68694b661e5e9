//! What `--log-level` means: our own events at the asked level, and the GPU stack's crates
//! (cubecl, wgpu, naga, burn) at `warn` unless the user asks for `debug` or `trace`, so a
//! default run prints no per-kernel autotune or shader lines. The audio decoders (symphonia)
//! stay at `error`: an MP3 read from a seek point warns on every frame whose bit reservoir lies
//! before it ("invalid main_data_begin"), which is expected, not a fault of the file.

/// The `tracing` filter for `--log-level LEVEL`: a bare level keeps third-party crates at `warn`
/// (or quieter, for `error`); `debug`/`trace` open every crate; a directive with `=` or `,`
/// (RUST_LOG syntax) is taken as written.
pub fn filter_directives(level: &str) -> String {
    const QUIET_DECODERS: &str = "symphonia=error";
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return level.to_string();
    }
    match level.to_ascii_lowercase().as_str() {
        "error" | "off" => level.to_ascii_lowercase(),
        "warn" => format!("warn,{QUIET_DECODERS}"),
        "debug" | "trace" => level.to_ascii_lowercase(),
        other => format!("warn,{QUIET_DECODERS},arp_train={other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::filter_directives;

    #[test]
    fn third_party_crates_stay_at_warn_unless_asked() {
        assert_eq!(
            filter_directives("info"),
            "warn,symphonia=error,arp_train=info"
        );
        assert_eq!(filter_directives("warn"), "warn,symphonia=error");
        assert_eq!(filter_directives("error"), "error");
        assert_eq!(filter_directives("debug"), "debug");
        assert_eq!(
            filter_directives("info,cubecl_runtime=info"),
            "info,cubecl_runtime=info"
        );
    }
}

use std::sync::atomic::{AtomicUsize, Ordering};

static AUTOTUNED: AtomicUsize = AtomicUsize::new(0);

/// Kernel shapes cubecl has autotuned in this process so far (each new matmul, reduce or conv
/// problem shape is tuned once, then read from the on-disk cache in later runs).
pub fn autotuned_shapes() -> usize {
    AUTOTUNED.load(Ordering::Relaxed)
}

/// A `tracing` layer that counts cubecl's "Tuning <key>" events whatever the log level shown.
pub struct AutotuneCounter;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AutotuneCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}").starts_with("Tuning ");
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            AUTOTUNED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The per-layer filter of [`AutotuneCounter`]: cubecl's tuner at `info`, nothing else.
pub fn autotune_events() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("cubecl_runtime::tune", tracing::Level::INFO)
}

/// The stage summary's line on autotuning since `before` (a count from [`autotuned_shapes`]);
/// none on backends that do not autotune.
pub fn autotune_summary(before: usize) -> Option<String> {
    let tuned = autotuned_shapes().saturating_sub(before);
    (tuned > 0).then(|| {
        format!("  GPU kernels: {tuned} new problem shapes autotuned (kept in cubecl's on-disk cache for later runs)")
    })
}
