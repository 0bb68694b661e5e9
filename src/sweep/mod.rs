//! Sweeps (`arp-train sweep FILE`): a base recipe plus a list of named variants and/or a grid
//! of `--set` overrides, expanded into runs under one directory (`<output_dir>/<run name>/`).
//!
//! ```yaml
//! recipe: ../tiny.yaml            # relative to this file
//! output_dir: ../../checkpoints/sweeps/tiny-decoupling
//! set: ["lm.steps=60"]            # applied to every run
//! runs:                           # named variants (optional)
//!   - name: both-stages
//!   - name: freeze-lm
//!     set: ["freeze=[lm]"]
//! grid:                           # every combination, crossed with the runs (optional)
//!   lm.optimizer.lr: [1.0e-3, 1.0e-2]
//! ```
//!
//! Paths inside `set` values resolve against the working directory, as with `--set`.

pub mod summary;

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    recipe: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    output_dir: Option<String>,
    #[serde(default)]
    set: Vec<String>,
    #[serde(default)]
    runs: Vec<RunEntry>,
    #[serde(default)]
    grid: serde_yaml::Mapping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunEntry {
    name: String,
    #[serde(default)]
    set: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub file: PathBuf,
    pub description: Option<String>,
    pub recipe: PathBuf,
    pub output_dir: Option<PathBuf>,
    /// Overrides every run gets.
    pub common: Vec<String>,
    pub runs: Vec<SweepRun>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    /// Directory name under the sweep's output directory.
    pub name: String,
    /// The run's own overrides (what tells it apart in the summary).
    pub overrides: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
}

/// A grid value as `--set` text: YAML scalars as written, lists and maps in flow (JSON) form.
fn value_text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Null => "null".into(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn name_part(key: &str, value: &str) -> String {
    let short = key.rsplit('.').next().unwrap_or(key);
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-');
    format!(
        "{short}-{}",
        if cleaned.is_empty() { "none" } else { cleaned }
    )
}

/// The most runs one sweep file expands to (runs x every grid combination).
pub const MAX_RUNS: usize = 1000;

impl Sweep {
    pub fn load(file: &Path) -> Result<Sweep, String> {
        let text = crate::recipe::node::read_document(file)
            .map_err(|e| format!("cannot read the sweep {}: {e}", file.display()))?;
        let spec: SweepFile =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new(""));
        let resolve = |p: &str| {
            crate::recipe::node::normalize(
                &std::env::current_dir()
                    .unwrap_or_default()
                    .join(base)
                    .join(p),
            )
        };

        let mut axes: Vec<(String, Vec<String>)> = Vec::new();
        for (key, values) in &spec.grid {
            let key = key
                .as_str()
                .ok_or_else(|| {
                    format!(
                        "{}: grid: keys are recipe keys (text), found {key:?}",
                        file.display()
                    )
                })?
                .to_string();
            let values = values
                .as_sequence()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{}: grid.{key}: expected a non-empty list of values",
                        file.display()
                    )
                })?;
            axes.push((key, values.iter().map(value_text).collect()));
        }
        // Counted before anything is expanded: ten keys of ten values are 10^10 runs.
        let lengths: Vec<usize> = std::iter::once(spec.runs.len().max(1))
            .chain(axes.iter().map(|(_, values)| values.len()))
            .collect();
        // Exact below 2^53, which is all the message prints.
        let count: f64 = lengths.iter().map(|&n| n as f64).product();
        if count > MAX_RUNS as f64 {
            let factors: Vec<String> = lengths.iter().map(usize::to_string).collect();
            return Err(format!(
                "{}: the sweep has {} runs ({}: the runs times each grid list's length); a sweep runs at most {MAX_RUNS}: split it or shorten the grid's lists",
                file.display(),
                if count < 1e15 { format!("{count:.0}") } else { "more than 10^15".to_string() },
                factors.join(" x "),
            ));
        }
        // Every combination of the grid, in file order (the last key varies fastest).
        let mut combos: Vec<(Vec<String>, Vec<String>)> = vec![(Vec::new(), Vec::new())];
        for (key, values) in &axes {
            combos = combos
                .into_iter()
                .flat_map(|(names, sets)| {
                    values.iter().map(move |v| {
                        let mut names = names.clone();
                        let mut sets = sets.clone();
                        names.push(name_part(key, v));
                        sets.push(format!("{key}={v}"));
                        (names, sets)
                    })
                })
                .collect();
        }
        let named = !spec.runs.is_empty();
        let entries: Vec<RunEntry> = if spec.runs.is_empty() {
            vec![RunEntry {
                name: String::new(),
                set: Vec::new(),
            }]
        } else {
            spec.runs
        };
        let mut runs = Vec::new();
        for entry in &entries {
            if named && !valid_name(&entry.name) {
                return Err(format!(
                    "{}: runs: {:?} is not a usable run name (letters, digits, '-', '_', '.'; it names a directory)",
                    file.display(),
                    entry.name
                ));
            }
            for (names, sets) in &combos {
                let name: Vec<&str> = std::iter::once(entry.name.as_str())
                    .chain(names.iter().map(String::as_str))
                    .filter(|n| !n.is_empty())
                    .collect();
                let mut overrides = entry.set.clone();
                overrides.extend(sets.iter().cloned());
                runs.push(SweepRun {
                    name: name.join("_"),
                    overrides,
                });
            }
        }
        if runs.len() == 1 && runs[0].name.is_empty() {
            return Err(format!(
                "{}: the sweep has no runs: add `runs:` (named variants) or `grid:` (keys with lists of values)",
                file.display()
            ));
        }
        for (i, run) in runs.iter().enumerate() {
            if runs[..i].iter().any(|r| r.name == run.name) {
                return Err(format!(
                    "{}: two runs are named {:?}",
                    file.display(),
                    run.name
                ));
            }
        }
        Ok(Sweep {
            file: file.to_path_buf(),
            description: spec.description,
            recipe: resolve(&spec.recipe),
            output_dir: spec.output_dir.as_deref().map(resolve),
            common: spec.set,
            runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Sweep, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sweep.yaml");
        std::fs::write(&file, text).unwrap();
        Sweep::load(&file)
    }

    #[test]
    fn runs_cross_the_grid_in_file_order() {
        let sweep = load(
            "recipe: r.yaml\noutput_dir: out\nset: [seed=3]\nruns:\n  - name: both\n  - name: frozen\n    set: [\"freeze=[lm]\"]\ngrid:\n  lm.optimizer.lr: [1.0e-3, 0.01]\n  freeze: [[lm], []]\n",
        )
        .unwrap();
        let names: Vec<&str> = sweep.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "both_lr-0.001_freeze-lm",
                "both_lr-0.001_freeze-none",
                "both_lr-0.01_freeze-lm",
                "both_lr-0.01_freeze-none",
                "frozen_lr-0.001_freeze-lm",
                "frozen_lr-0.001_freeze-none",
                "frozen_lr-0.01_freeze-lm",
                "frozen_lr-0.01_freeze-none",
            ]
        );
        assert_eq!(
            sweep.runs[5].overrides,
            ["freeze=[lm]", "lm.optimizer.lr=0.001", "freeze=[]"]
        );
        assert_eq!(sweep.common, ["seed=3"]);
        assert!(sweep.recipe.ends_with("r.yaml") && sweep.recipe.is_absolute());
    }

    #[test]
    fn a_grid_is_counted_before_it_is_expanded() {
        let keys: String = (0..10)
            .map(|k| format!("  k{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
            .collect();
        let err = load(&format!("recipe: r.yaml\ngrid:\n{keys}")).unwrap_err();
        assert!(
            err.contains("the sweep has 10000000000 runs (1 x 10 x 10"),
            "{err}"
        );
        assert!(err.contains("at most 1000"), "{err}");
        let keys: String = (0..40)
            .map(|k| format!("  k{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
            .collect();
        let err = load(&format!("recipe: r.yaml\ngrid:\n{keys}")).unwrap_err();
        assert!(err.contains("more than 10^15 runs"), "{err}");
        let ok = load("recipe: r.yaml\ngrid:\n  a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  c: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n").unwrap();
        assert_eq!(ok.runs.len(), 1000);
    }

    #[test]
    fn grid_only_and_list_only_sweeps() {
        let grid = load("recipe: r.yaml\ngrid:\n  lm.lora.rank: [4, 8]\n").unwrap();
        let names: Vec<&str> = grid.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rank-4", "rank-8"]);
        assert_eq!(grid.output_dir, None);
        let list =
            load("recipe: r.yaml\nruns:\n  - {name: a}\n  - {name: b, set: [seed=2]}\n").unwrap();
        assert_eq!(list.runs[1].overrides, ["seed=2"]);
    }

    #[test]
    fn bad_sweeps_say_what_is_wrong() {
        let err = load("recipe: r.yaml\n").unwrap_err();
        assert!(err.contains("the sweep has no runs"), "{err}");
        let err = load("recipe: r.yaml\nrunz: []\n").unwrap_err();
        assert!(
            err.contains("unknown field `runz`") && err.contains("line 2"),
            "{err}"
        );
        let err = load("recipe: r.yaml\nruns:\n  - {name: a}\n  - {name: a}\n").unwrap_err();
        assert!(err.contains("two runs are named \"a\""), "{err}");
        let err = load("recipe: r.yaml\nruns:\n  - {name: ../x}\n").unwrap_err();
        assert!(err.contains("not a usable run name"), "{err}");
        let err = load("recipe: r.yaml\ngrid:\n  seed: 3\n").unwrap_err();
        assert!(
            err.contains("grid.seed: expected a non-empty list"),
            "{err}"
        );
    }
}
