//! A loss-curve image (SVG, so it needs no plotting library and opens in any browser): training
//! loss per step, and evaluation loss where it was measured.

use std::fmt::Write as _;
use std::path::Path;

/// Writes `train` (step, loss) and `eval` (step, loss) as an SVG line chart.
pub fn write_loss_svg(
    path: &Path,
    title: &str,
    train: &[(usize, f64)],
    eval: &[(usize, f64)],
) -> std::io::Result<()> {
    let (w, h, margin) = (720.0, 400.0, 56.0);
    let points: Vec<&(usize, f64)> = train
        .iter()
        .chain(eval)
        .filter(|(_, l)| l.is_finite())
        .collect();
    let max_step = points.iter().map(|(s, _)| *s).max().unwrap_or(1).max(1) as f64;
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, l)| {
            (a.min(*l), b.max(*l))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let x = |s: usize| margin + (s as f64 / max_step) * (w - 2.0 * margin);
    let y = |l: f64| h - margin - (l - lo) / (hi - lo) * (h - 2.0 * margin);
    let line = |series: &[(usize, f64)]| -> String {
        series
            .iter()
            .filter(|(_, l)| l.is_finite())
            .map(|(s, l)| format!("{:.1},{:.1}", x(*s), y(*l)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{margin}" y="24" font-size="15">{}</text>"#,
        title.replace('<', "&lt;")
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{margin}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{margin}" y1="{margin}" x2="{margin}" y2="{b}" stroke="black"/>"#,
        b = h - margin,
        r = w - margin
    );
    for k in 0..=4 {
        let value = lo + (hi - lo) * k as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="4" y="{:.1}">{value:.3}</text>"#,
            y(value) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">step {}</text>"#,
        w - margin - 40.0,
        h - margin + 20.0,
        max_step as usize
    );
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="{}"/>"#,
        line(train)
    );
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="darkorange" stroke-width="2" points="{}"/>"#,
        line(eval)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="40" fill="steelblue">train loss</text>"#,
        w - margin - 150.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="40" fill="darkorange">eval loss</text>"#,
        w - margin - 70.0
    );
    svg.push_str("</svg>\n");
    crate::atomic::write(path, svg.as_bytes())
}
