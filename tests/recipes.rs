//! Recipe checking: every shipped recipe validates; malformed ones fail with exit code 2 and an
//! error naming file, line and key.

use crate::common::{arp_train, dry_run_tiny, repo, text, tiny_recipe};

#[test]
fn every_shipped_recipe_validates() {
    let mut args = vec!["validate".to_string()];
    let mut files: Vec<_> = std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "base, tiny and six characters: {files:?}");
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = arp_train(&repo(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ok: "))
            .count(),
        files.len()
    );
}

#[test]
fn tiny_recipe_validates_strictly() {
    let out = arp_train(&repo(), &["validate", "--strict", "recipes/tiny.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).is_empty(),
        "no warnings expected: {}",
        text(&out.stderr)
    );
}

/// One malformed recipe: extra YAML appended to a valid tiny recipe, extra CLI args, and what
/// the error must name. `line` is the line of the recipe file (counted after the `extends` line
/// that `tiny_recipe` writes), or None when the error is about a --set flag or another file.
struct Case {
    name: &'static str,
    yaml: &'static str,
    args: &'static [&'static str],
    line: Option<usize>,
    key: &'static str,
    message: &'static str,
}

const HEADER_LINES: usize = 1;

const CASES: &[Case] = &[
    Case {
        name: "unknown top-level key",
        yaml: "seeed: 3\n",
        args: &[],
        line: Some(1),
        key: "`seeed`",
        message: "did you mean `seed`?",
    },
    Case {
        name: "typo in nested key",
        yaml: "lm:\n  optimizer:\n    lrr: 0.001\n",
        args: &[],
        line: Some(3),
        key: "`lm.optimizer.lrr`",
        message: "did you mean `lr`?",
    },
    Case {
        name: "wrong type",
        yaml: "seed: forty-two\n",
        args: &[],
        line: Some(1),
        key: "`seed`",
        message: "expected a non-negative integer, found the string \"forty-two\"",
    },
    Case {
        name: "negative learning rate",
        yaml: "lm:\n  optimizer:\n    lr: -1.0e-4\n",
        args: &[],
        line: Some(3),
        key: "`lm.optimizer.lr`",
        message: "must be greater than 0",
    },
    Case {
        name: "unknown dtype",
        yaml: "dtype: bf61\n",
        args: &[],
        line: Some(1),
        key: "`dtype`",
        message: "did you mean \"bf16\"?",
    },
    Case {
        name: "unknown lora target",
        yaml: "lm:\n  lora:\n    targets: [query_key_value, dense_h_to_4hh]\n",
        args: &[],
        line: Some(3),
        key: "`lm.lora.targets`",
        message: "did you mean `dense_h_to_4h`?",
    },
    Case {
        name: "steps and epochs",
        yaml: "lm:\n  steps: 10\n",
        args: &[],
        line: Some(2),
        key: "`lm.steps`",
        message: "set either `steps` or `epochs`, not both (`epochs` is set at ",
    },
    Case {
        name: "dropout out of range",
        yaml: "lm:\n  lora:\n    dropout: 1.5\n",
        args: &[],
        line: Some(3),
        key: "`lm.lora.dropout`",
        message: "must be in [0, 1)",
    },
    Case {
        name: "bf16 on cpu",
        yaml: "dtype: bf16\n",
        args: &[],
        line: Some(1),
        key: "`dtype`",
        message: "not supported on device `cpu`",
    },
    Case {
        name: "both stages frozen",
        yaml: "freeze: [lm, decoder]\n",
        args: &[],
        line: Some(1),
        key: "`freeze`",
        message: "nothing would be trained",
    },
    Case {
        name: "frozen decoder without init",
        yaml: "freeze: [decoder]\n",
        args: &[],
        line: Some(1),
        key: "`freeze`",
        message: "set `decoder.init`",
    },
    Case {
        name: "max below min seconds",
        yaml: "data:\n  filters:\n    max_seconds: 0.2\n",
        args: &[],
        line: Some(3),
        key: "`data.filters.max_seconds`",
        message: "must be greater than min_seconds",
    },
    Case {
        name: "beta out of range",
        yaml: "lm:\n  optimizer:\n    betas: [0.9, 1.5]\n",
        args: &[],
        line: Some(3),
        key: "`lm.optimizer.betas`",
        message: "beta2 must be in [0, 1)",
    },
    Case {
        name: "unknown device",
        yaml: "device: tpu\n",
        args: &[],
        line: Some(1),
        key: "`device`",
        message: "unknown device \"tpu\"",
    },
    Case {
        name: "missing data file",
        yaml: "data:\n  manifests: [no/such/manifest.jsonl]\n",
        args: &["--strict"],
        line: Some(2),
        key: "`data.manifests`",
        message: "manifest not found",
    },
    Case {
        name: "duplicate key",
        yaml: "seed: 1\nseed: 2\n",
        args: &[],
        line: Some(2),
        key: "",
        message: "duplicate key `seed`",
    },
    Case {
        name: "yaml syntax",
        yaml: "lm:\n  lora: [rank: 4\n",
        args: &[],
        line: None,
        key: "",
        message: "YAML syntax error",
    },
    Case {
        name: "mapping expected",
        yaml: "decoder: 7\n",
        args: &[],
        line: Some(1),
        key: "`decoder`",
        message: "expected a mapping of keys",
    },
    Case {
        name: "bad --set path",
        yaml: "",
        args: &["--set", "lm.optimzer.lr=1e-3"],
        line: None,
        key: "`lm.optimzer`",
        message: "--set lm.optimzer.lr=1e-3 (override 1)",
    },
    Case {
        name: "bad --set type",
        yaml: "",
        args: &["--set", "lm.batch_size=two"],
        line: None,
        key: "`lm.batch_size`",
        message: "--set lm.batch_size=two (override 1)",
    },
    Case {
        name: "--set through a scalar",
        yaml: "",
        args: &["--set", "seed.value=3"],
        line: None,
        key: "`seed.value`",
        message: "`seed` is an integer, not a mapping",
    },
    Case {
        name: "--set without =",
        yaml: "",
        args: &["--set", "lm.steps"],
        line: None,
        key: "",
        message: "expected key.path=value",
    },
    Case {
        name: "negative --set",
        yaml: "",
        args: &["--set", "decoder.flow.optimizer.lr=-3"],
        line: None,
        key: "`decoder.flow.optimizer.lr`",
        message: "must be greater than 0",
    },
];

#[test]
fn malformed_recipes_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let file = tiny_recipe(dir.path(), &format!("case{i}.yaml"), case.yaml);
        let file_text = file.display().to_string();
        let mut args = vec!["validate", file_text.as_str()];
        args.extend_from_slice(case.args);
        let out = arp_train(dir.path(), &args);
        let stderr = text(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", out.status.code()));
        }
        let located = match case.line {
            Some(line) => stderr.contains(&format!("{}:{}: error", file_text, line + HEADER_LINES)),
            None => {
                stderr.contains(": error")
                    && (stderr.contains(&file_text) || stderr.contains("--set "))
            }
        };
        if !located {
            problems.push("no file:line location".into());
        }
        if !stderr.contains(case.key) || !stderr.contains(case.message) {
            problems.push(format!(
                "missing key {:?} or message {:?}",
                case.key, case.message
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", case.name, problems.join("; ")));
        }
    }
    assert!(CASES.len() >= 15);
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = tiny_recipe(
        dir.path(),
        "many.yaml",
        "seeed: 1\nlm:\n  batch_size: 0\n  lora:\n    rank: zero\n",
    );
    let out = arp_train(dir.path(), &["validate", &file.display().to_string()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for key in ["`seeed`", "`lm.batch_size`", "`lm.lora.rank`"] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
    assert!(stderr.contains("3 errors in recipe"), "{stderr}");
}

#[test]
fn cyclic_extends_is_reported_with_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "extends: b.yaml\nseed: 1\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "seed: 2\nextends: a.yaml\n").unwrap();
    let out = arp_train(dir.path(), &["validate", "a.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("b.yaml:2: error: `extends`: cyclic extends:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a.yaml -> ") && stderr.contains("b.yaml -> "),
        "{stderr}"
    );
}

#[test]
fn missing_extends_and_card_files_are_errors_even_when_lenient() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "extends: nowhere.yaml\ncharacter: cards/missing.yaml\n",
    )
    .unwrap();
    let out = arp_train(dir.path(), &["validate", "r.yaml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("r.yaml:1: error: `extends`: cannot read ")
            && stderr.contains("nowhere.yaml: No such file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("r.yaml:2: error: `character`: cannot read character card ")
            && stderr.contains("cards/missing.yaml: No such file"),
        "{stderr}"
    );
}

#[test]
fn character_card_errors_point_into_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.yaml");
    std::fs::write(&card, "name: X\nspeaker: x\nseries: S\nlanguage: en\npersona: p\nspeaking_style: s\nsystem_prompt: '  '\nmood: grumpy\n").unwrap();
    let file = tiny_recipe(
        dir.path(),
        "r.yaml",
        &format!("character: {}\n", card.display()),
    );
    let out = arp_train(dir.path(), &["validate", &file.display().to_string()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:7: error: `system_prompt`: must not be empty",
            card.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:8: error: `mood`: unknown key", card.display())),
        "{stderr}"
    );
}

#[test]
fn overrides_take_effect_and_inherit_deeply() {
    let stdout = dry_run_tiny(&["--set", "lm.lora.rank=12", "--set", "lm.steps=30"]);
    assert!(stdout.contains("rank: 12"), "{stdout}");
    // alpha 32 comes from tiny.yaml, dropout 0.0 too, targets from base.yaml.
    assert!(
        stdout.contains("alpha: 32.0") && stdout.contains("- dense_4h_to_h"),
        "{stdout}"
    );
    assert!(stdout.contains("1. lm       train 30 steps"), "{stdout}");
}

#[test]
fn resolved_recipe_is_a_recipe_that_loads_back_equal() {
    use arp_train::recipe::{PathCheck, Recipe};
    let tiny = repo().join("recipes/tiny.yaml");
    let first = Recipe::load(&tiny, &["lm.lora.rank=12".to_string()], PathCheck::Strict)
        .unwrap()
        .recipe;
    let yaml = first.resolved_yaml();
    // Defaults are filled in and paths are absolute.
    assert!(yaml.contains("max_nonfinite_steps: 5"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "- {}",
            repo().join("data/tiny-lab/manifest.jsonl").display()
        )),
        "{yaml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("resolved.yaml");
    std::fs::write(&copy, &yaml).unwrap();
    let second = Recipe::load(&copy, &[], PathCheck::Strict).unwrap().recipe;
    assert_eq!(second.resolved_yaml(), yaml);
    assert_eq!(
        (&second.lm, &second.decoder, &second.data),
        (&first.lm, &first.decoder, &first.data)
    );
    assert_eq!(second.character, first.character);
}

#[test]
fn eval_every_defaults_to_the_recipes_checkpoint_every() {
    use arp_train::recipe::{PathCheck, Recipe};
    let tiny = repo().join("recipes/tiny.yaml");
    let recipe = Recipe::load(&tiny, &[], PathCheck::Strict).unwrap().recipe;
    // tiny.yaml sets decoder.flow.checkpoint_every: 10 and no eval_every.
    assert_eq!(recipe.decoder.flow.train.checkpoint_every, 10);
    assert_eq!(recipe.decoder.flow.train.eval_every, 10);
    // An explicit eval_every still wins.
    assert_eq!(recipe.lm.train.eval_every, 30);
}

#[test]
fn output_moves_the_cache_unless_the_recipe_sets_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("elsewhere");
    let stdout = dry_run_tiny(&["--output", out.to_str().unwrap()]);
    assert!(
        stdout.contains(&format!("cache_dir: {}", out.join("cache").display())),
        "{stdout}"
    );
    let kept = dir.path().join("shared-cache");
    let stdout = dry_run_tiny(&[
        "--output",
        out.to_str().unwrap(),
        "--set",
        &format!("data.cache_dir={}", kept.display()),
    ]);
    assert!(
        stdout.contains(&format!("cache_dir: {}", kept.display())),
        "{stdout}"
    );
}

/// `QualityFilters::base()` (build-data's filters, which has no recipe) stays the base recipe's.
#[test]
fn the_filters_without_a_recipe_are_the_base_recipes() {
    use arp_train::recipe::{PathCheck, QualityFilters, Recipe};
    for recipe in ["recipes/tiny.yaml", "recipes/sheldon.yaml"] {
        let loaded = Recipe::load(&repo().join(recipe), &[], PathCheck::Lenient)
            .unwrap()
            .recipe;
        assert_eq!(loaded.data.filters, QualityFilters::base(), "{recipe}");
    }
}
