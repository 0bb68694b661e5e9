//! A sweep's summary table: one row per run with its overrides, which stages it trained, where
//! each trained curve ended, how long it trained, and its package's ARP-Eval scores once
//! scored, read back from the run directories (so a resumed sweep reports runs finished by
//! earlier invocations too). Written as Markdown and CSV.

use std::path::Path;

use crate::eval::scores::METRICS;
use crate::package;
use crate::report::{CurveSummary, StageRecord, FINAL_LOSS};

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub run: String,
    pub overrides: String,
    pub status: String,
    pub trained: String,
    /// (train, held-out) of lm, flow, vocoder.
    pub curves: [(Option<f64>, Option<f64>); 3],
    pub lm_steps: Option<usize>,
    /// Seconds the run's parts trained, summed over its finished stages.
    pub train_seconds: Option<f64>,
    /// The package's ARP-Eval means, in [`METRICS`] order (None: not scored).
    pub scores: Vec<Option<f64>>,
}

/// The columns: the run, its curves, its training time, then one per ARP-Eval metric.
pub fn header() -> Vec<String> {
    let mut header: Vec<String> = CURVE_HEADER.iter().map(|h| h.to_string()).collect();
    header.push("train time".into());
    header.extend(METRICS.iter().map(|(_, label, _)| label.to_string()));
    header
}

const CURVE_HEADER: [&str; 11] = [
    "run",
    "overrides",
    "status",
    "trained",
    "lm steps",
    "lm train loss",
    "lm held-out loss",
    "flow train loss",
    "flow held-out loss",
    "vocoder train mel L1",
    "vocoder held-out mel L1",
];

fn ends(curve: Option<&CurveSummary>) -> (Option<f64>, Option<f64>) {
    curve.map_or((None, None), |c| (c.final_loss, c.final_eval_loss))
}

/// The row of the run in `run_dir`, from its package manifest, else its stage records.
pub fn read_row(name: &str, overrides: &[String], status: &str, run_dir: &Path) -> Row {
    let manifest = package::open(&crate::run_dir::package_dir(run_dir))
        .ok()
        .flatten();
    let lm = StageRecord::read(&crate::run_dir::lm_dir(run_dir))
        .ok()
        .flatten();
    let decoder = StageRecord::read(&crate::run_dir::decoder_dir(run_dir))
        .ok()
        .flatten();
    let records = [&lm, &decoder];
    let finished: Vec<&StageRecord> = records.iter().filter_map(|r| r.as_ref()).collect();
    let train_seconds = (!finished.is_empty()).then(|| {
        finished
            .iter()
            .map(|r| match r.train_seconds.is_empty() {
                // Records of earlier builds: the finishing invocation's time.
                true => r.wall_seconds,
                false => r.train_seconds.values().sum(),
            })
            .sum()
    });
    let scores = METRICS
        .iter()
        .map(|(key, _, _)| {
            manifest
                .as_ref()
                .and_then(|m| m.scores.as_ref())
                .and_then(|s| s["candidates"][*key]["mean"].as_f64())
        })
        .collect();
    let (lm_curves, decoder_curves, trained) = match &manifest {
        Some(m) => (
            m.lm.curves.clone(),
            m.decoder.curves.clone(),
            match m.trained_stages().as_slice() {
                [] => "none".to_string(),
                stages => stages.join("+"),
            },
        ),
        None => (
            lm.as_ref().map(|r| r.curves.clone()).unwrap_or_default(),
            decoder
                .as_ref()
                .map(|r| r.curves.clone())
                .unwrap_or_default(),
            "-".to_string(),
        ),
    };
    Row {
        run: name.to_string(),
        overrides: if overrides.is_empty() {
            "(base recipe)".into()
        } else {
            overrides.join(" ")
        },
        status: status.to_string(),
        trained,
        lm_steps: lm_curves.get("lm").map(|c| c.steps),
        curves: [
            ends(lm_curves.get("lm")),
            ends(decoder_curves.get("flow")),
            ends(decoder_curves.get("vocoder")),
        ],
        train_seconds,
        scores,
    }
}

fn cells(row: &Row) -> Vec<String> {
    let number = |v: Option<f64>| v.map_or("-".to_string(), crate::progress::sig4);
    let mut out = vec![
        row.run.clone(),
        row.overrides.clone(),
        row.status.clone(),
        row.trained.clone(),
        row.lm_steps.map_or("-".into(), |s| s.to_string()),
    ];
    for (train, eval) in row.curves {
        out.push(number(train));
        out.push(number(eval));
    }
    out.push(
        row.train_seconds
            .map_or("-".into(), crate::progress::duration),
    );
    out.extend(row.scores.iter().map(|v| number(*v)));
    out
}

pub fn markdown(title: &str, rows: &[Row]) -> String {
    let mut s = format!("# {title}\n\n");
    let header = header();
    s.push_str(&format!("| {} |\n", header.join(" | ")));
    s.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        let escaped: Vec<String> = cells(row)
            .into_iter()
            .map(|c| c.replace('|', "\\|"))
            .collect();
        s.push_str(&format!("| {} |\n", escaped.join(" | ")));
    }
    s.push_str(&format!(
        "\nLosses: train loss (final: {FINAL_LOSS}), and the last held-out evaluation. \
         `-`: the stage was not trained in that run (frozen) or has not finished. Train time: \
         the finished stages' training, over every invocation.\n\
         ARP-Eval (AP, AQ): the means of each run's package scores; `arp-train sweep --eval` scores \
         every package, `arp-train eval --model <run>/arp-model` one.\n",
    ));
    s
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

pub fn csv(rows: &[Row]) -> String {
    let mut s = header()
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for row in rows {
        let line: Vec<String> = cells(row)
            .into_iter()
            .map(|c| {
                if c == "-" {
                    String::new()
                } else {
                    csv_field(&c)
                }
            })
            .collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_their_cells() {
        let row = Row {
            run: "freeze-lm".into(),
            overrides: "freeze=[lm] description=\"a, b\"".into(),
            status: "done".into(),
            trained: "decoder".into(),
            curves: [(None, None), (Some(1.5), Some(2.0)), (Some(0.25), None)],
            lm_steps: None,
            train_seconds: Some(185.0),
            scores: vec![Some(0.81234), None, None, None, None, None],
        };
        let md = markdown("sweep", &[row.clone()]);
        assert!(md.contains("| freeze-lm | freeze=[lm] description=\"a, b\" | done | decoder | - | - | - | 1.500 | 2.000 | 0.2500 | - | 3m05s | 0.8123 | - | - | - | - | - |"), "{md}");
        let csv = csv(&[row]);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "freeze-lm,\"freeze=[lm] description=\"\"a, b\"\"\",done,decoder,,,,1.500,2.000,0.2500,,3m05s,0.8123,,,,,"
        );
    }
}
