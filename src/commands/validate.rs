//! `arp-train validate FILE...`: check recipes without running anything.

use std::path::PathBuf;

use super::Exit;
use crate::recipe::{PathCheck, Recipe};

/// Checks each file; prints `ok` or its diagnostics. With `strict`, data and weights that are
/// not there yet are errors too (as they are when running).
pub fn validate(files: &[PathBuf], overrides: &[String], strict: bool) -> Exit {
    let paths = if strict {
        PathCheck::Strict
    } else {
        PathCheck::Lenient
    };
    let mut failed = 0;
    for file in files {
        match Recipe::load(file, overrides, paths) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("{w}");
                }
                let kind = if loaded.recipe.template {
                    " (template: meant for `extends`)"
                } else {
                    ""
                };
                println!("ok: {}{kind}", file.display());
            }
            Err(errors) => {
                failed += 1;
                eprintln!("{errors}");
                println!("invalid: {}", file.display());
            }
        }
    }
    if failed == 0 {
        Exit::Ok
    } else {
        Exit::Usage(format!(
            "{failed} of {} recipe file(s) invalid",
            files.len()
        ))
    }
}
