//! Loss-curve images (SVG, so they need no plotting library and open in any browser): the
//! training loss per step as a line, the held-out loss as markers where it was measured, with
//! ticked and titled axes; and the run's page of plots.

use std::fmt::Write as _;
use std::path::Path;

use crate::run_dir;

/// Up to about five round tick values (1, 2 or 5 times a power of ten apart) covering lo..=hi.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 4.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| span / s <= 5.0)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

fn tick_label(value: f64) -> String {
    let text = crate::progress::sig4(value);
    if text.contains('.') && !text.contains('e') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

/// Writes `train` (step, loss) as a line and `eval` (step, loss) as markers.
pub fn write_loss_svg(
    path: &Path,
    title: &str,
    loss_name: &str,
    train: &[(usize, f64)],
    eval: &[(usize, f64)],
) -> std::io::Result<()> {
    crate::atomic::write(path, render(title, loss_name, train, eval).as_bytes())
}

fn render(title: &str, loss_name: &str, train: &[(usize, f64)], eval: &[(usize, f64)]) -> String {
    let (w, h) = (760.0, 420.0);
    let (left, right, top, bottom) = (70.0, 24.0, 48.0, 52.0);
    let finite = |series: &[(usize, f64)]| -> Vec<(usize, f64)> {
        series
            .iter()
            .copied()
            .filter(|(_, l)| l.is_finite())
            .collect()
    };
    let (train, eval) = (finite(train), finite(eval));
    let max_step = train
        .iter()
        .chain(&eval)
        .map(|(s, _)| *s)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (mut lo, mut hi) = train
        .iter()
        .chain(&eval)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, l)| {
            (a.min(*l), b.max(*l))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo, hi) = (lo - pad, hi + pad);
    let x = |s: f64| left + s / max_step * (w - left - right);
    let y = |l: f64| h - bottom - (l - lo) / (hi - lo) * (h - top - bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    for value in ticks(lo, hi) {
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{r:.1}" y2="{py:.1}" stroke="#e4e4e4"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{}</text>"##,
            tick_label(value),
            py = y(value),
            r = w - right,
            tx = left - 6.0,
            ty = y(value) + 4.0
        );
    }
    for value in ticks(0.0, max_step) {
        let _ = writeln!(
            svg,
            r#"<line x1="{px:.1}" y1="{b:.1}" x2="{px:.1}" y2="{t:.1}" stroke="black"/><text x="{px:.1}" y="{ty:.1}" text-anchor="middle">{}</text>"#,
            tick_label(value),
            px = x(value),
            b = h - bottom,
            t = h - bottom + 5.0,
            ty = h - bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>"#,
        b = h - bottom,
        r = w - right
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">optimizer step</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (top + h - bottom) / 2.0,
        escape(loss_name)
    );
    let points: Vec<String> = train
        .iter()
        .map(|(s, l)| format!("{:.1},{:.1}", x(*s as f64), y(*l)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="{}"/>"#,
        points.join(" ")
    );
    for (s, l) in &eval {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="darkorange" stroke="white"><title>step {s}: {}</title></circle>"#,
            x(*s as f64),
            y(*l),
            crate::progress::sig4(*l)
        );
    }
    let legend_x = w - right - 200.0;
    let _ = writeln!(
        svg,
        r#"<line x1="{legend_x}" y1="36" x2="{:.1}" y2="36" stroke="steelblue" stroke-width="2"/><text x="{:.1}" y="40">train</text>"#,
        legend_x + 18.0,
        legend_x + 22.0
    );
    let _ = writeln!(
        svg,
        r#"<circle cx="{:.1}" cy="36" r="4" fill="darkorange"/><text x="{:.1}" y="40">held-out</text>"#,
        legend_x + 80.0,
        legend_x + 88.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// The run's `plots.html`: every part's loss curve that exists so far and eval's plot, with a
/// reload every 30 s.
pub fn write_index(output_dir: &Path) -> std::io::Result<()> {
    let parts = [
        (
            "stage one (lm)",
            run_dir::lm_dir(Path::new("")).join(run_dir::LOSS_PLOT),
        ),
        (
            "stage two: flow",
            run_dir::decoder_dir(Path::new(""))
                .join(run_dir::FLOW)
                .join(run_dir::LOSS_PLOT),
        ),
        (
            "stage two: vocoder",
            run_dir::decoder_dir(Path::new(""))
                .join(run_dir::HIFT)
                .join(run_dir::LOSS_PLOT),
        ),
        (
            "ARP-Eval",
            Path::new(run_dir::EVAL).join(run_dir::EVAL_PLOT),
        ),
    ];
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
         <title>arp-train run</title></head>\n<body style=\"font-family:sans-serif\">\n",
    );
    let _ = writeln!(
        html,
        "<h1>{}</h1>",
        escape(&output_dir.display().to_string())
    );
    for (name, relative) in parts {
        if output_dir.join(&relative).is_file() {
            let src = relative.to_string_lossy().replace('\\', "/");
            let _ = writeln!(html, "<h2>{name}</h2>\n<img src=\"{src}\" alt=\"{name}\">");
        }
    }
    html.push_str("<p>TensorBoard: <code>tensorboard --logdir .</code> in this directory.</p>\n</body></html>\n");
    crate::atomic::write(&output_dir.join(run_dir::PLOT_INDEX), html.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 120.0), [0.0, 50.0, 100.0]);
        assert_eq!(ticks(6.93, 9.21), [7.0, 7.5, 8.0, 8.5, 9.0]);
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(100.0), "100");
    }

    #[test]
    fn held_out_points_are_markers_and_axes_are_titled() {
        let svg = render(
            "stage one (lm)",
            "loss",
            &[(1, 9.0), (2, 8.0), (3, 7.5)],
            &[(0, 9.2), (3, 7.7)],
        );
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "two points + legend\n{svg}"
        );
        assert!(svg.contains(">optimizer step</text>"));
        assert!(svg.contains("rotate(-90)\" text-anchor=\"middle\">loss</text>"));
        assert!(svg.contains("<title>step 3: 7.700</title>"));
    }
}
