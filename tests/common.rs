//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `arp-train` binary with `args` in `cwd`.
pub fn arp_train(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .expect("the arp-train binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A recipe in a temporary directory: line 1 extends a valid recipe on the tiny corpus (itself
/// extending the shipped base); `extra` follows from line 2.
pub fn tiny_recipe(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let repo = repo();
    let valid = dir.join("valid-tiny.yaml");
    let body = format!(
        "extends: {base}\ncharacter: {card}\ndevice: cpu\ndtype: fp32\ndata:\n  manifests: [{manifest}]\n  speech_tokenizer: {tokenizer}\nlm:\n  base_model: {lm}\ndecoder:\n  config: {decoder}\n",
        base = repo.join("recipes/base.yaml").display(),
        card = repo.join("characters/ada.yaml").display(),
        manifest = repo.join("data/tiny-lab/manifest.jsonl").display(),
        tokenizer = repo.join("models/tiny/glm-4-voice-tokenizer").display(),
        lm = repo.join("models/tiny/glm-4-voice-9b").display(),
        decoder = repo.join("models/tiny/glm-4-voice-decoder/config.yaml").display(),
    );
    std::fs::write(&valid, body).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("extends: {}\n{extra}", valid.display())).unwrap();
    path
}

/// Dry-runs the shipped tiny recipe with `extra` flags; asserts success and returns stdout.
pub fn dry_run_tiny(extra: &[&str]) -> String {
    let mut args = vec!["--recipe", "recipes/tiny.yaml", "--dry-run"];
    args.extend_from_slice(extra);
    let out = arp_train(&repo(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// `arp-train prepare` of the tiny recipe into `dir/cache` (shared by the runs of one test).
pub fn prepared_tiny_cache(dir: &Path) -> PathBuf {
    let cache = dir.join("cache");
    let out = arp_train(
        &repo(),
        &[
            "prepare",
            "--recipe",
            "recipes/tiny.yaml",
            "--set",
            &format!("data.cache_dir={}", cache.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    cache
}

/// `--recipe recipes/tiny.yaml --output OUTPUT --set data.cache_dir=CACHE`, then `--set S` for
/// each of `sets`.
pub fn tiny_run_args(output: &Path, cache: &Path, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--recipe".into(),
        "recipes/tiny.yaml".into(),
        "--output".into(),
        output.display().to_string(),
        "--set".into(),
        format!("data.cache_dir={}", cache.display()),
    ];
    for set in sets {
        args.push("--set".into());
        args.push(set.to_string());
    }
    args
}

/// Runs the `arp-train` binary in the repository with `args` and extra environment variables
/// (the fault-injection hooks).
pub fn arp_train_env(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arp-train"));
    cmd.args(args).current_dir(repo()).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the arp-train binary runs")
}

/// Copies the directory tree `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
