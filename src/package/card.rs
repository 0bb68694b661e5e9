//! The model card (`README.md`) of an ARP-Model package: what it is, what made it, how well it
//! trained, and how to run it with arp-train or with the original GLM-4-Voice demo, after Hugging
//! Face's YAML front matter. It holds no wall times or paths of the training machine, so the
//! same inputs give the same card wherever it was made.

use std::fmt::Write;

use super::{Component, Manifest, ADAPTER_DIR, DECODER_DIR, LM_DIR, RECIPE};
use crate::recipe::Recipe;

fn number(value: Option<f64>) -> String {
    value.map_or("-".into(), crate::progress::sig4)
}

fn curve_rows(out: &mut String, stage: &str, component: &Component) {
    if component.curves.is_empty() {
        let _ = writeln!(out, "| {stage} | not trained | - | - | - |");
    }
    for (part, c) in &component.curves {
        let _ = writeln!(
            out,
            "| {stage} ({part}) | {} steps{} | {} -> {} | {} -> {} | {} |",
            c.steps,
            if c.skipped_steps > 0 {
                format!(", {} skipped", c.skipped_steps)
            } else {
                String::new()
            },
            number(c.first_loss),
            number(c.final_loss),
            number(c.first_eval_loss),
            number(c.final_eval_loss),
            match part.as_str() {
                "lm" => "cross-entropy on reply tokens",
                "flow" => "flow-matching MSE",
                "vocoder" => "mel L1",
                _ => "",
            }
        );
    }
}

/// The Hugging Face model-card metadata (YAML front matter): the license GLM-4-Voice's weights
/// come under, the base model when it is GLM-4-Voice-9B, and tags to find the card by.
fn front_matter(m: &Manifest, recipe: &Recipe) -> String {
    let c = &m.character;
    let mut s = String::from("---\n");
    let _ = writeln!(s, "language:\n- {}", yaml_scalar(&c.language));
    let _ = writeln!(
        s,
        "license: other\nlicense_name: glm-4\nlicense_link: https://huggingface.co/THUDM/glm-4-voice-9b/blob/main/LICENSE"
    );
    let base_is_glm4_voice = recipe
        .lm
        .base_model
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("glm-4-voice-9b"));
    if base_is_glm4_voice {
        let _ = writeln!(s, "base_model: THUDM/glm-4-voice-9b");
    }
    let _ = writeln!(
        s,
        "tags:\n- arp-train\n- audio-role-play\n- glm-4-voice\n- {}",
        yaml_scalar(&format!("character:{}", c.speaker))
    );
    s.push_str("---\n\n");
    s
}

/// `text` as a YAML scalar: JSON's quoting is valid YAML.
fn yaml_scalar(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

pub fn render(m: &Manifest, recipe: &Recipe) -> String {
    let mut s = front_matter(m, recipe);
    let c = &m.character;
    let _ = writeln!(s, "# {}: {} ({})\n", m.name, c.name, c.series);
    let _ = writeln!(
        s,
        "An audio role-play model (ARP-Model) made by arp-train with the AudioRole recipe \
         (arXiv 2509.23435) on GLM-4-Voice: it answers in {}'s words and voice.\n",
        c.name
    );
    if let Some(description) = &recipe.description {
        let _ = writeln!(s, "Recipe: {description}\n");
    }
    let _ = writeln!(s, "## Stages\n");
    let _ = writeln!(s, "| stage | made how |\n|---|---|");
    let _ = writeln!(s, "| stage one: LM (`{LM_DIR}/`) | {} |", m.lm.source);
    let _ = writeln!(
        s,
        "| stage two: decoder (`{DECODER_DIR}/`) | {} |",
        m.decoder.source
    );
    let _ = writeln!(
        s,
        "\nTrained stages: {}.\n",
        match m.trained_stages().as_slice() {
            [] => "none".to_string(),
            stages => stages.join(", "),
        }
    );
    let _ = writeln!(s, "## Data\n");
    let _ = writeln!(
        s,
        "{} utterances of speaker `{}` ({:.3} hours), {} for training and {} held out.\n",
        m.data.train_utterances + m.data.validation_utterances,
        c.speaker,
        m.data.hours,
        m.data.train_utterances,
        m.data.validation_utterances
    );
    let _ = writeln!(s, "## Training\n");
    let _ = writeln!(
        s,
        "| part | steps | train loss (first -> final) | held-out loss (first -> last) | loss |\n|---|---|---|---|---|"
    );
    curve_rows(&mut s, "lm", &m.lm);
    curve_rows(&mut s, "decoder", &m.decoder);
    let _ = writeln!(
        s,
        "\nFinal train loss: {}. Loss curves are in `plots/`.\n",
        crate::report::FINAL_LOSS
    );
    let _ = writeln!(s, "## ARP-Eval scores\n");
    match &m.scores {
        Some(scores) => scores_section(&mut s, scores),
        None => {
            let _ = writeln!(
                s,
                "Not scored yet: `arp-train eval --model <this directory>` scores it.\n"
            );
        }
    }
    let _ = writeln!(s, "## Persona\n");
    let _ = writeln!(
        s,
        "The LM was trained with this persona after GLM-4-Voice's system instruction; \
         `arp-train generate` on this package uses it by default.\n"
    );
    for line in c.system_prompt.lines() {
        let _ = writeln!(s, "> {line}");
    }
    let _ = writeln!(s, "\n## Use it with arp-train\n");
    let _ = writeln!(
        s,
        "```sh\nPACKAGE=path/to/this/directory\n\
         arp-train generate --model \"$PACKAGE\" --prompt \"How was your day?\" --codes-out reply.json\n\
         arp-train synth --decoder \"$PACKAGE\" --codes reply.json --out reply.wav\n```\n"
    );
    let _ = writeln!(s, "## Use it with the original GLM-4-Voice demo\n");
    let _ = writeln!(
        s,
        "The demo (github.com/THUDM/GLM-4-Voice) loads the LM with `transformers` and the decoder \
         from `flow.pt` / `hift.pt`. Convert the decoder once (arp-train's \
         `tools/data/decoder_convert.py`, needs torch), then point the demo at the package:\n"
    );
    let _ = writeln!(
        s,
        "```sh\nPACKAGE=path/to/this/directory\n\
         python tools/data/decoder_convert.py to-pt \"$PACKAGE/{DECODER_DIR}\"\n\
         python model_server.py --model-path \"$PACKAGE/{LM_DIR}\"\n\
         python web_demo.py --model-path \"$PACKAGE/{LM_DIR}\" --flow-path \"$PACKAGE/{DECODER_DIR}\" \\\n    \
         --tokenizer-path THUDM/glm-4-voice-tokenizer\n```\n"
    );
    let _ = writeln!(
        s,
        "Put the persona above into the demo's system prompt to get the character."
    );
    if m.adapter.is_some() {
        let _ = writeln!(
            s,
            "\nThe LoRA adapter alone is in `{ADAPTER_DIR}/` (PEFT layout): \
             `PeftModel.from_pretrained(base, \"$PACKAGE/{ADAPTER_DIR}\")` on the base GLM-4-Voice-9B \
             gives the same model as `{LM_DIR}/` up to bf16 rounding."
        );
    }
    let _ = writeln!(s, "\n## Recipe\n");
    let _ = writeln!(
        s,
        "The resolved recipe is `{RECIPE}`; `arp-model.json` lists every file with its size and SHA-256."
    );
    s
}

/// The ARP-Eval table `arp-train eval --model` records: the package's synthesis of the held-out
/// lines against the character's real clips.
fn scores_section(s: &mut String, scores: &serde_json::Value) {
    use crate::eval::scores::METRICS;
    let stat = |side: &str, key: &str| {
        let v = &scores[side][key];
        match (v["mean"].as_f64(), v["std"].as_f64(), v["n"].as_u64()) {
            (Some(m), Some(sd), Some(n)) => format!("{m:.3} ± {sd:.3} (n={n})"),
            _ => "-".into(),
        }
    };
    if scores["candidates"].is_object() {
        let _ = writeln!(
            s,
            "{}\n\n| metric | this model | real reference | |\n|---|---|---|---|",
            scores["description"].as_str().unwrap_or("")
        );
        for (key, label, reading) in METRICS {
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {reading} |",
                stat("candidates", key),
                stat("references", key)
            );
        }
        let _ = writeln!(s, "\nPer-clip distributions: `{}`.", super::EVAL_PLOT);
        if !scores["content"].is_null() {
            let _ = writeln!(s, "\nContent (LLM judge): `{}`", scores["content"]);
        }
        let _ = writeln!(s);
    } else {
        let _ = writeln!(
            s,
            "```json\n{}\n```\n",
            serde_json::to_string_pretty(scores).unwrap_or_default()
        );
    }
}
