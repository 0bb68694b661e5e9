//! A sweep's summary table: one row per run with its overrides, which stages it trained, and
//! where each trained curve ended, read back from the run directories (so a resumed sweep
//! reports runs finished by earlier invocations too). Written as Markdown and CSV.

use std::path::Path;

use crate::package;
use crate::report::{CurveSummary, StageRecord};

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub run: String,
    pub overrides: String,
    pub status: String,
    pub trained: String,
    /// (train, held-out) of lm, flow, vocoder.
    pub curves: [(Option<f64>, Option<f64>); 3],
    pub lm_steps: Option<usize>,
}

pub const HEADER: [&str; 11] = [
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
            lm.map(|r| r.curves).unwrap_or_default(),
            decoder.map(|r| r.curves).unwrap_or_default(),
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
    }
}

fn cells(row: &Row) -> Vec<String> {
    let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
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
    out
}

pub fn markdown(title: &str, rows: &[Row]) -> String {
    let mut s = format!("# {title}\n\n");
    s.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    s.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
    for row in rows {
        let escaped: Vec<String> = cells(row)
            .into_iter()
            .map(|c| c.replace('|', "\\|"))
            .collect();
        s.push_str(&format!("| {} |\n", escaped.join(" | ")));
    }
    s.push_str(
        "\nLosses: mean of the last five training steps, and the last held-out evaluation. \
         `-`: the stage was not trained in that run (frozen) or has not finished.\n\
         ARP-Eval: `arp-train eval --model <run>/arp-model` scores a run's package (AP, AQ).\n",
    );
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
    let mut s = HEADER.join(",");
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
        };
        let md = markdown("sweep", &[row.clone()]);
        assert!(md.contains("| freeze-lm | freeze=[lm] description=\"a, b\" | done | decoder | - | - | - | 1.5000 | 2.0000 | 0.2500 | - |"), "{md}");
        let csv = csv(&[row]);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "freeze-lm,\"freeze=[lm] description=\"\"a, b\"\"\",done,decoder,,,,1.5000,2.0000,0.2500,"
        );
    }
}
