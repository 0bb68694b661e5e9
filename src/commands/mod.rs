//! One module per CLI command. Each returns an `Exit` so `main` maps outcomes to exit codes.

pub mod bench;
pub mod build_data;
pub mod eval;
pub mod generate;
pub mod import;
pub mod prepare;
pub mod run;
pub mod sweep;
pub mod synth;
pub mod validate;

use std::path::Path;

use crate::faults::{Faults, PartFaults};
use crate::pipeline;
use crate::recipe::diagnostics::RecipeErrors;
use crate::recipe::{Loaded, PathCheck, Recipe};

/// How a command ended.
#[derive(Debug)]
pub enum Exit {
    Ok,
    /// Bad recipe, bad flags or bad input: exit code 2, before any work starts.
    Usage(String),
    /// The work itself failed: exit code 1.
    Failed(String),
}

impl Exit {
    pub fn code(&self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed(_) => 1,
            Exit::Usage(_) => 2,
        }
    }
}

impl From<Result<(), pipeline::Error>> for Exit {
    fn from(result: Result<(), pipeline::Error>) -> Self {
        match result {
            Ok(()) => Exit::Ok,
            Err(pipeline::Error::Refused(why)) => Exit::Usage(why),
            Err(pipeline::Error::Failed(why)) => Exit::Failed(why),
        }
    }
}

impl From<RecipeErrors> for Exit {
    fn from(e: RecipeErrors) -> Self {
        Exit::Usage(e.to_string())
    }
}

/// Loads a recipe to run: every problem is an error (missing data too), warnings are printed,
/// and templates are refused.
pub fn load_runnable(file: &Path, overrides: &[String]) -> Result<Recipe, Exit> {
    load_checked(file, overrides, PathCheck::Strict).map(|loaded| loaded.recipe)
}

/// A recipe that is not a template, its warnings printed; with `PathCheck::Lenient` (a dry run)
/// data and weights that are not there yet are warnings, marked `missing_input`.
pub fn load_checked(file: &Path, overrides: &[String], paths: PathCheck) -> Result<Loaded, Exit> {
    let loaded = Recipe::load(file, overrides, paths)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    if loaded.recipe.template {
        return Err(Exit::Usage(format!(
            "{} is a template (`template: true`), meant to be extended by a character's recipe; run that recipe instead",
            file.display()
        )));
    }
    Ok(loaded)
}

/// Failures tests inject through the environment (never set in normal use):
/// `ARP_FAULT_<PART>_NAN_STEPS=3,4` makes those steps' losses NaN and
/// `ARP_FAULT_<PART>_ABORT_IN_CHECKPOINT=8` aborts halfway through writing that step's checkpoint
/// (`<PART>_` is empty for stage one, `FLOW_` or `HIFT_` for stage two);
/// `ARP_FAULT_ABORT_IN_PACKAGE` aborts halfway through packaging.
pub fn injected_faults() -> Faults {
    let steps = |var: &str| -> Vec<usize> {
        std::env::var(var)
            .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let part = |prefix: &str| PartFaults {
        nan_steps: steps(&format!("ARP_FAULT_{prefix}NAN_STEPS")),
        abort_in_checkpoint: steps(&format!("ARP_FAULT_{prefix}ABORT_IN_CHECKPOINT")),
    };
    Faults {
        lm: part(""),
        flow: part("FLOW_"),
        hift: part("HIFT_"),
        abort_in_package: std::env::var_os("ARP_FAULT_ABORT_IN_PACKAGE").is_some(),
    }
}
