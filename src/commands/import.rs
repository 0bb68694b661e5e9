//! `arp-train import`: a manifest from GLM-4-Voice SFT JSONL, an LJSpeech metadata.csv, or
//! per-speaker folders of clips with transcripts.

use std::path::PathBuf;

use super::Exit;
use crate::import::{self, Format};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The input's format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The input: the SFT JSONL file, the metadata.csv (or its directory), or the root folder.
    #[arg(long, value_name = "PATH")]
    pub input: PathBuf,
    /// The manifest to write (JSONL).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The character's speaker name, for formats that carry none (SFT, LJSpeech).
    #[arg(long)]
    pub speaker: Option<String>,
}

pub fn import_command(args: ImportArgs) -> Exit {
    if let Err(e) = crate::atomic::check_target(&args.out) {
        return Exit::Usage(format!("--out: {e}"));
    }
    let imported = match import::import(args.format, &args.input, args.speaker.as_deref()) {
        Ok(imported) => imported,
        Err(e) => return Exit::Usage(e),
    };
    for skipped in &imported.skipped {
        tracing::warn!("skipped {skipped}");
    }
    if imported.lines.is_empty() {
        return Exit::Usage(format!("{}: no lines to import", args.input.display()));
    }
    if let Err(e) = import::write(&imported.lines, &args.out) {
        return Exit::Failed(e);
    }
    crate::logfile::say(format!(
        "{} lines imported into {} ({} skipped); point a recipe at it with --set data.manifests=[{}]",
        imported.lines.len(),
        args.out.display(),
        imported.skipped.len(),
        args.out.display()
    ));
    Exit::Ok
}
