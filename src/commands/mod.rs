//! One module per CLI command. Each returns an `Exit` so `main` maps outcomes to exit codes.

pub mod run;
pub mod validate;

use crate::recipe::diagnostics::RecipeErrors;

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
