//! Character cards (`characters/*.yaml`): who the ARP-Model plays, and the persona text that
//! joins GLM-4-Voice's system prompt in stage one.

use std::path::{Path, PathBuf};

use crate::recipe::diagnostics::Diagnostics;
use crate::recipe::node::{parse, Node, Origin};
use crate::recipe::reader::Section;

#[derive(Clone, Debug, PartialEq)]
pub struct Character {
    pub file: PathBuf,
    /// Display name, e.g. "Sheldon Cooper".
    pub name: String,
    /// The speaker label of this character's lines in the data manifests.
    pub speaker: String,
    pub series: String,
    /// BCP-47-ish language code of the character's lines ("en", "zh").
    pub language: String,
    pub persona: String,
    pub speaking_style: String,
    /// The persona block appended to GLM-4-Voice's system prompt in every stage-one sample.
    pub system_prompt: String,
}

impl Character {
    /// Reads and checks a card; problems go to `diags` with the card's file and line.
    /// `referrer` is where the recipe names the card (for a missing file).
    pub fn load(path: &Path, referrer: &Origin, diags: &Diagnostics) -> Option<Character> {
        let text = match crate::recipe::node::read_document(path) {
            Ok(text) => text,
            Err(e) => {
                diags.error(
                    referrer,
                    "character",
                    format!("cannot read character card {}: {e}", path.display()),
                );
                return None;
            }
        };
        let node = match parse(&text, path) {
            Ok(node) => node,
            Err(e) => {
                diags.error(&e.origin, "", format!("YAML syntax error: {}", e.message));
                return None;
            }
        };
        Some(Self::read(&node, path, diags))
    }

    fn read(node: &Node, path: &Path, diags: &Diagnostics) -> Character {
        let s = Section::new(node, "", diags);
        let text = |key: &'static str| -> String {
            let value: String = s.req(key).unwrap_or_default();
            if s.has(key) {
                s.check(!value.trim().is_empty(), key, "must not be empty");
            }
            value
        };
        let card = Character {
            file: path.to_path_buf(),
            name: text("name"),
            speaker: text("speaker"),
            series: text("series"),
            language: text("language"),
            persona: text("persona"),
            speaking_style: text("speaking_style"),
            system_prompt: text("system_prompt"),
        };
        s.finish();
        card
    }
}
