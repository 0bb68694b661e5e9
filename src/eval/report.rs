//! An evaluation's outputs: the JSON report, the terminal table and the per-clip plot (SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::scores::{summarize, ClipScore, Stat, METRICS};

pub const FORMAT: &str = "arp-eval/1";
pub const JSON_FILE: &str = "eval.json";
pub const PLOT_FILE: &str = crate::run_dir::EVAL_PLOT;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub candidates: BTreeMap<String, Stat>,
    pub references: BTreeMap<String, Stat>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    /// "held-out" (the recipe's real held-out clips), "package" (synthesized by an ARP-Model
    /// package from held-out speech codes) or "wavs" (a directory).
    pub mode: String,
    pub candidates_from: String,
    pub references_from: String,
    pub speaker_encoder: String,
    pub summary: Summary,
    /// Content Quality / Personalization from the LLM judge, when one was configured.
    pub content: Option<serde_json::Value>,
    pub candidates: Vec<ClipScore>,
    pub references: Vec<ClipScore>,
}

impl Report {
    pub fn new(
        mode: &str,
        candidates_from: String,
        references_from: String,
        speaker_encoder: String,
        candidates: Vec<ClipScore>,
        references: Vec<ClipScore>,
    ) -> Report {
        Report {
            format: FORMAT.into(),
            mode: mode.into(),
            candidates_from,
            references_from,
            speaker_encoder,
            summary: Summary {
                candidates: summarize(&candidates),
                references: summarize(&references),
            },
            content: None,
            candidates,
            references,
        }
    }

    /// The terminal table: one row per metric, candidates against the real reference clips.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let cell = |stat: Option<&Stat>| match stat {
            Some(st) if st.mean.abs() >= 10.0 => {
                format!("{:.2} ± {:.2} (n={})", st.mean, st.std, st.n)
            }
            Some(st) => format!("{:.3} ± {:.3} (n={})", st.mean, st.std, st.n),
            None => "-".into(),
        };
        let _ = writeln!(s, "{:<38} {:<24} real reference", "metric", "candidates");
        for (key, label, reading) in METRICS {
            let _ = writeln!(
                s,
                "{:<38} {:<24} {:<24} {}",
                label,
                cell(self.summary.candidates.get(key)),
                cell(self.summary.references.get(key)),
                reading
            );
        }
        let _ = writeln!(
            s,
            "candidates: {}\nreference:  {}",
            self.candidates_from, self.references_from
        );
        let silent: Vec<&str> = self
            .candidates
            .iter()
            .chain(&self.references)
            .filter(|c| c.voiced_seconds == 0.0)
            .map(|c| c.id.as_str())
            .collect();
        if !silent.is_empty() {
            let _ = writeln!(
                s,
                "warning: no voice activity in {} clip(s) ({}): their AP compares silence",
                silent.len(),
                silent.join(", ")
            );
        }
        if let Some(content) = &self.content {
            match content["skipped"].as_str() {
                Some(reason) => {
                    let _ = writeln!(s, "content (LLM judge): skipped: {reason}");
                }
                None => {
                    for (key, label) in [
                        ("content_quality", "CQ: content quality (1-10)"),
                        (
                            "content_personalization",
                            "CP: content personalization (1-10)",
                        ),
                    ] {
                        let stat: Option<Stat> = serde_json::from_value(content[key].clone()).ok();
                        let _ = writeln!(
                            s,
                            "{label:<38} {}  judge {}",
                            cell(stat.as_ref()),
                            content["judge"]
                        );
                    }
                }
            }
        }
        s
    }

    /// Per-clip values of every metric as strip plots, candidates beside the reference clips.
    pub fn svg(&self) -> String {
        let (panel_w, panel_h, cols) = (300.0, 220.0, 3usize);
        let rows = METRICS.len().div_ceil(cols);
        let (w, h) = (panel_w * cols as f64, panel_h * rows as f64 + 40.0);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"22\" font-size=\"14\">ARP-Eval (acoustic), {}: per-clip values, bar = mean</text>\n\
             <circle cx=\"{:.1}\" cy=\"18\" r=\"4\" fill=\"#d62728\"/><text x=\"{:.1}\" y=\"22\">candidates ({})</text>\n\
             <circle cx=\"{:.1}\" cy=\"18\" r=\"4\" fill=\"#1f77b4\"/><text x=\"{:.1}\" y=\"22\">real reference ({})</text>\n",
            escape(&self.mode),
            w - 330.0,
            w - 322.0,
            self.candidates.len(),
            w - 180.0,
            w - 172.0,
            self.references.len()
        );
        for (p, (key, label, _)) in METRICS.iter().enumerate() {
            let (x0, y0) = (
                (p % cols) as f64 * panel_w,
                40.0 + (p / cols) as f64 * panel_h,
            );
            let series = [
                (&self.candidates, "#d62728", 0.33, "candidates"),
                (&self.references, "#1f77b4", 0.67, "reference"),
            ];
            let values: Vec<f64> = series
                .iter()
                .flat_map(|(clips, _, _, _)| clips.iter().filter_map(|c| c.metric(key)))
                .collect();
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#ccc\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x0 + 40.0,
                y0 + 20.0,
                panel_w - 60.0,
                panel_h - 50.0,
                x0 + 40.0,
                y0 + 14.0,
                escape(label)
            );
            let Some(stat) = Stat::of(&values) else {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#888\">no values</text>",
                    x0 + 120.0,
                    y0 + 100.0
                );
                continue;
            };
            let (lo, hi) = if stat.max - stat.min < 1e-9 {
                (stat.min - 0.5, stat.max + 0.5)
            } else {
                (stat.min, stat.max)
            };
            let y = |v: f64| y0 + 20.0 + 8.0 + (hi - v) / (hi - lo) * (panel_h - 66.0);
            for (v, anchor) in [(hi, "end"), (lo, "end")] {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                    x0 + 37.0,
                    y(v) + 4.0,
                    short(v)
                );
            }
            for (clips, color, at, name) in series {
                let cx = x0 + 40.0 + at * (panel_w - 60.0);
                let _ = writeln!(
                    s,
                    "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{color}\">{name}</text>",
                    y0 + panel_h - 16.0
                );
                let pts: Vec<f64> = clips.iter().filter_map(|c| c.metric(key)).collect();
                for (i, v) in pts.iter().enumerate() {
                    let jitter = ((i * 37) % 21) as f64 - 10.0;
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\" fill-opacity=\"0.6\"/>",
                        cx + jitter,
                        y(*v)
                    );
                }
                if let Some(st) = Stat::of(&pts) {
                    let _ = writeln!(
                        s,
                        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>",
                        cx - 22.0,
                        cx + 22.0,
                        y(st.mean),
                        y(st.mean)
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::quality::Quality;

    fn clip(id: &str, ap: f64, voiced: f64) -> ClipScore {
        ClipScore {
            id: id.into(),
            source: format!("{id}.wav"),
            seconds: 2.0,
            voiced_seconds: voiced,
            ap_centroid: Some(ap),
            ap_pairwise: Some(ap - 0.05),
            ap_matched: None,
            campplus_centroid: None,
            quality: Quality {
                wada_snr_db: Some(20.0),
                hnr_db: None,
                spectral_flatness: Some(0.1),
            },
        }
    }

    #[test]
    fn table_and_plot_show_both_sides_and_flag_silent_clips() {
        let report = Report::new(
            "wavs",
            "dir".into(),
            "ref".into(),
            "enc".into(),
            vec![clip("a", 0.5, 1.0), clip("b", 0.7, 0.0)],
            vec![clip("r", 0.9, 2.0)],
        );
        let table = report.table();
        assert!(table.contains("0.600 ± 0.100 (n=2)"), "{table}");
        assert!(table.contains("0.900 ± 0.000 (n=1)"), "{table}");
        assert!(
            table.contains("no voice activity in 1 clip(s) (b)"),
            "{table}"
        );
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // AP centroid, AP pairwise, WADA and flatness have 3 dots each; HNR, matched and CAM++
        // (no weights given) none.
        assert_eq!(svg.matches("r=\"3\"").count(), 12);
        assert_eq!(svg.matches("no values").count(), 3);
    }
}
