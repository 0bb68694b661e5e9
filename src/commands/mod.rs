//! One module per CLI command. Each returns an `Exit` so `main` maps outcomes to exit codes.

pub mod bench;
pub mod eval;
pub mod generate;
pub mod prepare;
pub mod run;
pub mod sweep;
pub mod synth;
pub mod validate;

use std::path::Path;

use crate::recipe::diagnostics::RecipeErrors;
use crate::recipe::{PathCheck, Recipe};

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

impl From<RecipeErrors> for Exit {
    fn from(e: RecipeErrors) -> Self {
        Exit::Usage(e.to_string())
    }
}

/// Loads a recipe to run: every problem is an error (missing data too), warnings are printed,
/// and templates are refused.
pub fn load_runnable(file: &Path, overrides: &[String]) -> Result<Recipe, Exit> {
    let loaded = Recipe::load(file, overrides, PathCheck::Strict)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    if loaded.recipe.template {
        return Err(Exit::Usage(format!(
            "{} is a template (`template: true`), meant to be extended by a character's recipe; run that recipe instead",
            file.display()
        )));
    }
    Ok(loaded.recipe)
}
