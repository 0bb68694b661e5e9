//! Progress bars: drawn on a terminal, silent otherwise (CI logs, pipes, --log-format json).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar with ETA for `total` items; hidden when stderr is not a terminal.
pub fn bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}
