//! `arp-train prepare --recipe FILE`: the recipe's data scan, its rejections report, and the
//! dataset cache filled by [`crate::pipeline::prepare`], without training.

use std::path::PathBuf;

use super::{load_runnable, Exit};
use crate::backend::{self, DeviceSpec};
use crate::data::scan;
use crate::pipeline::prepare::prepare_recipe;
use crate::recipe::Recipe;

pub struct PrepareArgs {
    pub recipe: PathBuf,
    pub overrides: Vec<String>,
    pub device: Option<DeviceSpec>,
}

pub fn prepare(args: PrepareArgs) -> Exit {
    let recipe: Recipe = match load_runnable(&args.recipe, &args.overrides) {
        Ok(recipe) => recipe,
        Err(exit) => return exit,
    };
    let requested = args.device.unwrap_or(recipe.device);
    let (device, _) = match backend::resolve(requested, recipe.dtype) {
        Ok(resolved) => resolved,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let scan = match scan::scan(&recipe.data.manifests, &recipe.data.filters) {
        Ok(scan) => scan,
        Err(e) => return Exit::Usage(e.to_string()),
    };
    let report = scan::rejections_report(&recipe.output_dir);
    if let Err(e) = scan.write_rejections(&report) {
        return Exit::Failed(format!("cannot write {}: {e}", report.display()));
    }
    tracing::info!("{}", scan.summary(&report));
    prepare_recipe(&recipe, &scan, device).into()
}
