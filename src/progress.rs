//! The console while work runs: live bars on stderr (drawn on a terminal, silent in CI logs,
//! pipes and `--log-format json`), log lines printed above them without leaving copies of a bar
//! behind, and, during a run, one line with the whole run's progress and ETA.

use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Every bar of the process; log lines go through it so they print above the bars.
static BARS: LazyLock<MultiProgress> = LazyLock::new(|| {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }
});

/// A bar with ETA for `total` items, named by `label` for its whole life (its message, e.g. the
/// latest loss, is shown after the count).
pub fn bar(total: u64, label: &'static str) -> ProgressBar {
    let bar = BARS.add(ProgressBar::new(total));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})",
        )
        .expect("template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(label);
    bar
}

/// Prints `text` on stdout above the bars.
pub fn println_stdout(text: &str) {
    BARS.suspend(|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    });
}

/// A `tracing_subscriber` writer to stderr that clears the bars, writes, and redraws them.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BARS.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Four significant digits, as the console shows a loss, a learning rate or a norm.
pub fn sig4(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    format!("{value:.decimals$}")
}

/// `value` rounded to four significant digits, as a number: log fields stay numbers in
/// `--log-format json` and print short in text.
pub fn round4(value: f64) -> f64 {
    sig4(value).parse().unwrap_or(value)
}

/// `1h02m`, `3m05s`, `42s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One part of a run as the run line counts it.
struct PartProgress {
    name: String,
    total: usize,
    done: usize,
    /// Mean seconds per step measured in this process; None until the part has stepped.
    seconds_per_step: Option<f64>,
}

struct RunLine {
    bar: ProgressBar,
    parts: Vec<PartProgress>,
}

static RUN: Mutex<Option<RunLine>> = Mutex::new(None);

/// Starts the run line for the parts this invocation trains: (name, total steps, steps done).
pub fn start_run(parts: &[(&str, usize, usize)]) {
    let bar = BARS.add(ProgressBar::new_spinner());
    bar.set_style(ProgressStyle::with_template("{msg}").expect("template is valid"));
    bar.enable_steady_tick(Duration::from_secs(1));
    let line = RunLine {
        bar,
        parts: parts
            .iter()
            .map(|&(name, total, done)| PartProgress {
                name: name.to_string(),
                total,
                done: done.min(total),
                seconds_per_step: None,
            })
            .collect(),
    };
    line.bar.set_message(line.render());
    *RUN.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
}

/// Ends the run line (the run finished or stopped).
pub fn finish_run() {
    if let Some(line) = RUN.lock().unwrap_or_else(|e| e.into_inner()).take() {
        line.bar.finish_and_clear();
        BARS.remove(&line.bar);
    }
}

/// A part's progress: `done` of its steps, at `seconds_per_step` (None: not measured yet).
/// Returns the whole run's ETA when one is known, for log lines.
pub fn part_progress(name: &str, done: usize, seconds_per_step: Option<f64>) -> Option<String> {
    let mut guard = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let line = guard.as_mut()?;
    let part = line.parts.iter_mut().find(|p| p.name == name)?;
    part.done = done.min(part.total);
    if seconds_per_step.is_some() {
        part.seconds_per_step = seconds_per_step;
    }
    line.bar.set_message(line.render());
    line.eta()
        .map(|(seconds, untimed)| eta_text(seconds, &untimed))
}

fn eta_text(seconds: f64, untimed: &[&str]) -> String {
    if untimed.is_empty() {
        duration(seconds)
    } else {
        format!(
            "≥{} ({} not timed yet)",
            duration(seconds),
            untimed.join(", ")
        )
    }
}

impl RunLine {
    /// Seconds left over the timed parts, and the parts with steps left but no timing yet.
    fn eta(&self) -> Option<(f64, Vec<&str>)> {
        let mut seconds = 0.0;
        let mut untimed = Vec::new();
        let mut any_timed = false;
        for p in &self.parts {
            let left = p.total - p.done;
            match p.seconds_per_step {
                Some(s) => {
                    any_timed = true;
                    seconds += s * left as f64;
                }
                None if left > 0 => untimed.push(p.name.as_str()),
                None => {}
            }
        }
        any_timed.then_some((seconds, untimed))
    }

    fn render(&self) -> String {
        let done: usize = self.parts.iter().map(|p| p.done).sum();
        let total: usize = self.parts.iter().map(|p| p.total).sum();
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{} {}/{}", p.name, p.done, p.total))
            .collect();
        let eta = self
            .eta()
            .map_or("eta: after the first steps".into(), |(s, untimed)| {
                format!("eta {}", eta_text(s, &untimed))
            });
        format!(
            "{:>16} {done}/{total} steps ({}) · {eta}",
            "whole run",
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits() {
        assert_eq!(sig4(8.169337272644043), "8.169");
        assert_eq!(sig4(0.009913420622962606), "0.009913");
        assert_eq!(sig4(123.456), "123.5");
        assert_eq!(sig4(2.1304022616008766), "2.130");
        assert_eq!(sig4(40123.0), "40123");
        assert_eq!(sig4(1.5e-7), "1.500e-7");
        assert_eq!(sig4(0.0), "0");
        assert_eq!(sig4(f64::NAN), "NaN");
        assert_eq!(round4(8.169337272644043), 8.169);
        assert_eq!(round4(1.7723e-6), 1.772e-6);
    }

    #[test]
    fn whole_run_eta_counts_timed_parts_and_names_the_others() {
        let line = RunLine {
            bar: ProgressBar::hidden(),
            parts: vec![
                PartProgress {
                    name: "lm".into(),
                    total: 100,
                    done: 40,
                    seconds_per_step: Some(0.5),
                },
                PartProgress {
                    name: "flow".into(),
                    total: 50,
                    done: 0,
                    seconds_per_step: None,
                },
            ],
        };
        let (seconds, untimed) = line.eta().unwrap();
        assert_eq!(seconds, 30.0);
        assert_eq!(untimed, ["flow"]);
        assert_eq!(
            line.render(),
            "       whole run 40/150 steps (lm 40/100, flow 0/50) · eta ≥30s (flow not timed yet)"
        );
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(duration(185.0), "3m05s");
    }
}
