//! The model card (`README.md`) of an ARP-Model package: what it is, what made it, how well it
//! trained, and how to run it with arp-train or with the original GLM-4-Voice demo. It holds
//! no wall times or absolute paths of the run, so the same inputs give the same card.

use std::fmt::Write;

use super::{Component, Manifest, ADAPTER_DIR, DECODER_DIR, LM_DIR, RECIPE};
use crate::recipe::Recipe;

fn number(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.4}"))
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

pub fn render(m: &Manifest, recipe: &Recipe) -> String {
    let mut s = String::new();
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
        "| part | steps | train loss (first -> mean of last 5) | held-out loss (first -> last) | loss |\n|---|---|---|---|---|"
    );
    curve_rows(&mut s, "lm", &m.lm);
    curve_rows(&mut s, "decoder", &m.decoder);
    let _ = writeln!(s, "\nLoss curves are in `plots/`.\n");
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
