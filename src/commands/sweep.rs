//! `arp-train sweep FILE`: expands a sweep (base recipe + named variants and/or a grid of
//! overrides) into runs under one directory and runs them one after another. Every run's recipe
//! is checked before the first one starts. Finished runs are skipped, an interrupted one
//! resumes, a failed one is reported and the sweep goes on. After each run the summary table is
//! rewritten (`summary.md`, `summary.csv`).

use std::path::PathBuf;

use super::eval::EvalArgs;
use super::run::{execute, output_override, scan_recipe};
use super::{load_runnable, Exit};
use crate::backend::DeviceSpec;
use crate::pipeline::status::State;
use crate::pipeline::{Options, Survey};
use crate::plan::Plan;
use crate::recipe::Recipe;
use crate::sweep::summary::{self, Row};
use crate::sweep::Sweep;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The sweep file (recipes/sweeps/*.yaml).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Directory of the sweep's runs (overrides the file's output_dir).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Override a recipe key in every run (after the file's `set`, before each run's own).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// List the runs and where each stands; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Score each finished run's package with ARP-Eval (`arp-train eval --model`) unless it is
    /// scored already, so the summary compares the runs' scores.
    #[arg(long)]
    pub eval: bool,
}

pub fn sweep_command(args: SweepArgs, device: Option<DeviceSpec>) -> Exit {
    let sweep = match Sweep::load(&args.file) {
        Ok(sweep) => sweep,
        Err(e) => return Exit::Usage(e),
    };
    let Some(root) = args.output.clone().or(sweep.output_dir.clone()) else {
        return Exit::Usage(format!(
            "{}: no output directory: set `output_dir` in the sweep file or pass --output DIR",
            args.file.display()
        ));
    };
    // Every run's recipe is loaded and checked before anything runs.
    let mut recipes: Vec<Recipe> = Vec::new();
    let mut problems = Vec::new();
    for run in &sweep.runs {
        let mut overrides = sweep.common.clone();
        overrides.extend(args.overrides.iter().cloned());
        overrides.extend(run.overrides.iter().cloned());
        overrides.push(output_override(&root.join(&run.name)));
        match load_runnable(&sweep.recipe, &overrides) {
            Ok(recipe) => recipes.push(recipe),
            Err(Exit::Usage(e) | Exit::Failed(e)) => {
                problems.push(format!("run {:?}:\n{e}", run.name))
            }
            Err(Exit::Ok) => {}
        }
    }
    if !problems.is_empty() {
        return Exit::Usage(format!(
            "{}: {} of {} runs have recipe errors (nothing was run):\n{}",
            args.file.display(),
            problems.len(),
            sweep.runs.len(),
            problems.join("\n")
        ));
    }
    let title = format!(
        "Sweep {}{}",
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sweep
            .description
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    );
    println!(
        "{title}\n{} runs of {} in {}",
        sweep.runs.len(),
        sweep.recipe.display(),
        root.display()
    );

    if args.dry_run {
        for (run, recipe) in sweep.runs.iter().zip(&recipes) {
            let survey = scan_recipe(recipe)
                .ok()
                .map(|s| Survey::take(recipe, &Plan::new(recipe, &s), false));
            let conflict = survey.as_ref().and_then(|survey| {
                [&survey.lm, &survey.decoder]
                    .into_iter()
                    .find_map(|state| match state {
                        State::Conflict(why) => why.lines().nth(1).map(|l| l.trim().to_string()),
                        _ => None,
                    })
            });
            let state = if let Some(first_difference) = conflict {
                format!("REFUSED (its directory holds another recipe's run: {first_difference})")
            } else if survey.as_ref().is_some_and(|s| s.complete(recipe)) {
                "complete: skipped".into()
            } else if survey.is_some_and(|s| s.sources.is_some()) {
                "stages done: assembles the package".into()
            } else if recipe.output_dir.exists() {
                "started: resumes".into()
            } else {
                "not started".into()
            };
            println!(
                "  {:<28} {state}   {}",
                run.name,
                if run.overrides.is_empty() {
                    "(base recipe)".to_string()
                } else {
                    run.overrides.join(" ")
                }
            );
        }
        return Exit::Ok;
    }

    let mut statuses: Vec<String> = vec!["pending".into(); sweep.runs.len()];
    let write_summary = |statuses: &[String]| -> Result<String, String> {
        let rows: Vec<Row> = sweep
            .runs
            .iter()
            .zip(statuses)
            .map(|(run, status)| {
                summary::read_row(&run.name, &run.overrides, status, &root.join(&run.name))
            })
            .collect();
        let markdown = summary::markdown(&title, &rows);
        for (name, text) in [
            ("summary.md", &markdown),
            ("summary.csv", &summary::csv(&rows)),
        ] {
            let path = root.join(name);
            crate::atomic::write(&path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(markdown)
    };
    let mut failed = 0;
    let mut last_summary = String::new();
    for (i, (run, recipe)) in sweep.runs.iter().zip(&recipes).enumerate() {
        println!(
            "\n== sweep run {}/{}: {} ==",
            i + 1,
            sweep.runs.len(),
            run.name
        );
        // One scan per run (it reads every clip): for the completeness check and the run.
        let exit = match scan_recipe(recipe) {
            Ok(scanned)
                if Survey::take(recipe, &Plan::new(recipe, &scanned), false).complete(recipe) =>
            {
                println!("complete: skipped");
                None
            }
            Ok(scanned) => Some(execute(
                recipe,
                device,
                false,
                &Options {
                    faults: super::injected_faults(),
                    ..Options::default()
                },
                Some(scanned),
            )),
            Err(exit) => Some(exit),
        };
        let finished = matches!(exit, None | Some(Exit::Ok));
        statuses[i] = match exit {
            None => "done (earlier)".into(),
            Some(Exit::Ok) => "done".into(),
            Some(Exit::Usage(_) | Exit::Failed(_)) if crate::stop::requested().is_some() => {
                "stopped: rerun the sweep to continue".into()
            }
            Some(Exit::Usage(e) | Exit::Failed(e)) => {
                eprintln!("error: sweep run {}: {e}", run.name);
                failed += 1;
                format!("failed: {}", first_line(&e))
            }
        };
        if args.eval && finished && crate::stop::requested().is_none() {
            if let Err(e) = score_package(recipe, device) {
                eprintln!("error: sweep run {}: ARP-Eval: {e}", run.name);
                failed += 1;
                statuses[i] = format!("{}; eval failed: {}", statuses[i], first_line(&e));
            }
        }
        match write_summary(&statuses) {
            Ok(markdown) => last_summary = markdown,
            Err(e) => return Exit::Failed(e),
        }
        if let Some(signal) = crate::stop::requested() {
            return Exit::Failed(format!(
                "the sweep stopped by {} in run {:?} (its checkpoint is written); rerun the same command to continue",
                crate::stop::signal_name(signal),
                run.name
            ));
        }
    }
    println!(
        "\n{last_summary}\nsummary: {}, {}",
        root.join("summary.md").display(),
        root.join("summary.csv").display()
    );
    if failed > 0 {
        Exit::Failed(format!(
            "{failed} of {} sweep runs failed (see the summary)",
            sweep.runs.len()
        ))
    } else {
        Exit::Ok
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// `arp-train eval --model <run>/arp-model`, unless the package holds scores already.
fn score_package(recipe: &Recipe, device: Option<DeviceSpec>) -> Result<(), String> {
    let package = crate::run_dir::package_dir(&recipe.output_dir);
    if crate::package::open(&package)?.is_some_and(|m| m.scores.is_some()) {
        return Ok(());
    }
    // Parsed like the command line, so every other flag keeps `eval`'s own default.
    #[derive(clap::Parser)]
    struct Eval {
        #[command(flatten)]
        args: EvalArgs,
    }
    let package = package.display().to_string();
    let eval = <Eval as clap::Parser>::try_parse_from(["eval", "--model", package.as_str()])
        .map_err(|e| e.to_string())?;
    match super::eval::eval_command(eval.args, device) {
        Exit::Ok => Ok(()),
        Exit::Usage(e) | Exit::Failed(e) => Err(e),
    }
}
