//! The main form: `arp-train --recipe FILE [--set k=v ...] [--stages lm,decoder] [--dry-run]
//! [--output DIR]`. Loads and checks the recipe, resolves the device, scans the data, plans,
//! and hands the stages to the pipeline (which skips what is done and resumes what was cut).

use std::path::{Path, PathBuf};

use super::{load_checked, load_runnable, Exit};
use crate::backend::{self, DeviceSpec};
use crate::data::scan::{self, Scan};
use crate::logfile::say;
use crate::pipeline::{self, Options, StageName, Survey};
use crate::plan::{self, Plan};
use crate::recipe::diagnostics::Diagnostic;
use crate::recipe::{PathCheck, Recipe};
use crate::train::driver::Resume;

pub struct RunArgs {
    pub recipe: PathBuf,
    pub overrides: Vec<String>,
    pub dry_run: bool,
    pub output: Option<PathBuf>,
    pub device: Option<DeviceSpec>,
    pub resume: Resume,
    /// `--stages lm,decoder`; all stages when absent.
    pub stages: Option<String>,
    /// `--continue-finished`.
    pub continue_finished: bool,
}

/// `--output DIR` as an override of `output_dir`, like any --set, so defaults derived from it
/// (data.cache_dir) follow. A JSON string is a valid YAML scalar for any path.
pub fn output_override(dir: &Path) -> String {
    format!(
        "output_dir={}",
        serde_json::to_string(&dir.to_string_lossy()).unwrap_or_default()
    )
}

pub fn run(args: RunArgs) -> Exit {
    // `--device` first, so the recipe is checked for the device it will run on (`--device wgpu
    // --set dtype=fp16` on a CPU recipe); a `--set device=` after it still loses to the flag.
    let mut overrides: Vec<String> = args
        .device
        .map(|d| format!("device={d}"))
        .into_iter()
        .collect();
    overrides.extend(args.overrides.iter().cloned());
    if let Some(dir) = &args.output {
        overrides.push(output_override(dir));
    }
    let options = match &args.stages {
        None => Options {
            resume: args.resume.clone(),
            faults: super::injected_faults(),
            continue_finished: args.continue_finished,
            ..Options::default()
        },
        Some(list) => match StageName::parse_list(list) {
            Ok(stages) => Options {
                stages,
                stages_chosen: true,
                resume: args.resume.clone(),
                faults: super::injected_faults(),
                continue_finished: args.continue_finished,
            },
            Err(e) => return Exit::Usage(e),
        },
    };
    if args.dry_run {
        // A plan before the download: inputs that are not there yet are listed, not refused.
        return match load_checked(&args.recipe, &overrides, PathCheck::Lenient) {
            Ok(loaded) => {
                let missing: Vec<_> = loaded
                    .warnings
                    .into_iter()
                    .filter(|w| w.missing_input)
                    .collect();
                describe(&loaded.recipe, args.device, &options, None, &missing)
            }
            Err(exit) => exit,
        };
    }
    let recipe = match load_runnable(&args.recipe, &overrides) {
        Ok(recipe) => recipe,
        Err(exit) => return exit,
    };
    execute(&recipe, args.device, false, &options, None)
}

/// The recipe's data scan (reads every clip's audio for the quality filters).
pub fn scan_recipe(recipe: &Recipe) -> Result<Scan, Exit> {
    scan::scan(&recipe.data.manifests, &recipe.data.filters).map_err(|e| Exit::Usage(e.to_string()))
}

/// Runs (or with `dry_run`, describes) a loaded recipe: also what each run of a sweep does.
/// `scanned`: the recipe's data scan when the caller already has it.
pub fn execute(
    recipe: &Recipe,
    device_flag: Option<DeviceSpec>,
    dry_run: bool,
    options: &Options,
    scanned: Option<Scan>,
) -> Exit {
    if dry_run {
        return describe(recipe, device_flag, options, scanned, &[]);
    }
    let device = backend::resolve(device_flag.unwrap_or(recipe.device), recipe.dtype);
    // A real run stops on an unusable device before any work; a dry run reports it in the plan.
    let (device, dtype) = match device {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    // One run per directory, taken before anything is read or written (held until return).
    let _lock = match crate::run_lock::acquire(&recipe.output_dir) {
        Ok(lock) => lock,
        Err(e) => return Exit::Usage(e),
    };
    let scan = match scanned.map_or_else(|| scan_recipe(recipe), Ok) {
        Ok(scan) => scan,
        Err(exit) => return exit,
    };
    let plan = Plan::new(recipe, &scan);

    let cannot_write = |e: std::io::Error| {
        Exit::Failed(format!(
            "cannot write to {}: {e}",
            recipe.output_dir.display()
        ))
    };
    if let Err(e) = crate::atomic::write(
        &recipe.output_dir.join(crate::run_dir::RESOLVED_RECIPE),
        recipe.resolved_yaml().as_bytes(),
    ) {
        return cannot_write(e);
    }
    let log = match crate::logfile::open(&recipe.output_dir) {
        Ok(path) => path,
        Err(e) => return cannot_write(e),
    };
    tracing::info!(
        %device,
        %dtype,
        output = %recipe.output_dir.display(),
        recipe = %recipe.file.display(),
        log = %log.display(),
        "starting run"
    );
    let report = crate::data::scan::rejections_report(&recipe.output_dir);
    if let Err(e) = scan.write_rejections(&report) {
        return Exit::Failed(format!("cannot write {}: {e}", report.display()));
    }
    say(plan::render(recipe, &scan, &plan));
    tracing::info!("{}", scan.summary(&report));
    let exit: Exit = pipeline::run(recipe, &scan, &plan, device, dtype, options).into();
    if let Exit::Usage(message) | Exit::Failed(message) = &exit {
        crate::logfile::record(format!("error: {message}"));
    }
    crate::logfile::close();
    exit
}

/// The dry run: the resolved recipe, the device, the data, the plan and memory estimate, what a
/// run would skip or resume, and the inputs that are not there yet (`missing`: sized from the
/// released models' configs and planned on the manifests that exist).
fn describe(
    recipe: &Recipe,
    device_flag: Option<DeviceSpec>,
    options: &Options,
    scanned: Option<Scan>,
    missing: &[Diagnostic],
) -> Exit {
    let requested = device_flag.unwrap_or(recipe.device);
    let device = backend::resolve(requested, recipe.dtype);
    let present: Vec<PathBuf> = recipe
        .data
        .manifests
        .iter()
        .filter(|m| m.is_file())
        .cloned()
        .collect();
    let scan = match scanned {
        Some(scan) => scan,
        None => match scan::scan(&present, &recipe.data.filters) {
            Ok(scan) => scan,
            Err(e) => return Exit::Usage(e.to_string()),
        },
    };
    let plan = Plan::new(recipe, &scan);
    println!(
        "== resolved recipe ({}) ==\n{}",
        recipe.file.display(),
        recipe.resolved_yaml()
    );
    match &device {
        Ok((d, dtype)) => println!("device: {d} ({dtype})"),
        Err(e) => println!("device: {requested}: NOT USABLE: {e}"),
    }
    println!("output: {}\n", recipe.output_dir.display());
    print!("{}", plan::render(recipe, &scan, &plan));
    println!(
        "\n{}",
        Survey::take(recipe, &plan, options.continue_finished).render(recipe, options)
    );
    if !scan.rejected.is_empty() {
        println!(
            "rejections (a run writes them to {}):",
            crate::data::scan::rejections_report(&recipe.output_dir).display()
        );
        for r in &scan.rejected {
            let what = r.id.clone().unwrap_or_else(|| format!("line {}", r.line));
            println!(
                "  {}:{}: {what}: {}: {}",
                r.manifest.display(),
                r.line,
                r.reason,
                r.detail
            );
        }
    }
    if !missing.is_empty() {
        println!(
            "\n== not there yet: a run refuses to start without these ({}) ==",
            missing.len()
        );
        for m in missing {
            println!("  {}: `{}`: {}", m.origin, m.key, m.message);
        }
    }
    Exit::Ok
}
