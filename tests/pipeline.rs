//! The main command end to end on the tiny recipe: every stage on CPU, the ARP-Model package
//! answering through `generate` and `synth`, reruns that skip what is done, runs killed or
//! signalled at seeded points that end with the same package, `--stages`, and the decoupling sweep.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{arp_train, repo, text};

fn manifest(package: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(package.join("arp-model.json")).unwrap()).unwrap()
}

/// (path, sha256) of every package file except the recipe copy, which names the run's
/// output directory.
fn package_files(run: &Path) -> Vec<(String, String)> {
    manifest(&run.join("arp-model"))["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(path, _)| path != "recipe.yaml")
        .collect()
}

#[test]
fn the_tiny_recipe_runs_every_stage_and_its_package_answers() {
    crate::common::speaker_encoder_weights();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let cache = format!("data.cache_dir={}", dir.path().join("cache").display());
    let args = [
        "--recipe",
        "recipes/tiny.yaml",
        "--output",
        &output.display().to_string(),
        "--set",
        &cache,
        "--log-format",
        "json",
    ];
    let out = arp_train(&repo(), &args);
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let trained = started.elapsed().as_secs_f64();
    assert!(
        stdout.contains("prepared 21 utterances") && stdout.contains("stage one (lm): 120 steps"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stage two (decoder): 9 utterances"),
        "{stdout}"
    );
    // keep_last_n (3 in base.yaml) holds per stage and part, and the usage is printed.
    for (part, steps) in [
        ("lm", "40, 80, 120"),
        ("flow", "20, 30, 40"),
        ("hift", "4, 8, 12"),
    ] {
        assert!(
            stdout.contains(&format!("3 checkpoints kept (step {steps}; keep_last_n 3)")),
            "{part}: {stdout}"
        );
    }
    assert!(stdout.contains("disk: "), "{stdout}");
    let metrics = std::fs::read_to_string(output.join("lm/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        121,
        "the step-0 evaluation and 120 steps"
    );
    // The tiny recipe's stage one learns: train loss at least halves, eval loss falls.
    let records: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = records.iter().filter_map(|r| r["loss"].as_f64()).collect();
    let evals: Vec<f64> = records
        .iter()
        .filter_map(|r| r["eval_loss"].as_f64())
        .collect();
    let late = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    println!(
        "tiny stage one: train loss {:.3} -> {late:.3} (mean of the last 10), eval {:.3} -> {:.3}",
        losses[0],
        evals[0],
        evals[evals.len() - 1]
    );
    assert!(
        late <= 0.5 * losses[0],
        "train loss {} -> {late}",
        losses[0]
    );
    assert!(evals[evals.len() - 1] < evals[0], "eval loss {evals:?}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"starting run\"")),
        "json logs: {stderr}"
    );
    let resolved = std::fs::read_to_string(output.join("recipe.resolved.yaml")).unwrap();
    assert!(resolved.contains("rank: 16"));
    assert!(
        resolved.contains(&format!("output_dir: {}", output.display())),
        "{resolved}"
    );
    assert!(output.join("reports/data-rejections.jsonl").exists());

    // Stage two on the same run: the flow-matching loss falls by at least 40% and the
    // vocoder's mel L1 falls, on training batches and on the held-out utterance.
    let part = |name: &str| -> (Vec<f64>, Vec<f64>) {
        let text =
            std::fs::read_to_string(output.join(format!("decoder/{name}/metrics.jsonl"))).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (
            records.iter().filter_map(|r| r["loss"].as_f64()).collect(),
            records
                .iter()
                .filter_map(|r| r["eval_loss"].as_f64())
                .collect(),
        )
    };
    let tail = |v: &[f64]| v[v.len() - 5..].iter().sum::<f64>() / 5.0;
    let (flow, flow_eval) = part("flow");
    let (hift, hift_eval) = part("hift");
    println!(
        "tiny stage two: flow loss {:.3} -> {:.3} (held-out {:.3} -> {:.3}); vocoder mel L1 {:.3} -> {:.3} (held-out {:.3} -> {:.3})",
        flow[0], tail(&flow), flow_eval[0], flow_eval[flow_eval.len() - 1],
        hift[0], tail(&hift), hift_eval[0], hift_eval[hift_eval.len() - 1]
    );
    assert_eq!((flow.len(), hift.len()), (40, 12));
    assert!(tail(&flow) <= 0.6 * flow[0], "flow loss {flow:?}");
    assert!(
        flow_eval[flow_eval.len() - 1] <= 0.6 * flow_eval[0],
        "flow held-out {flow_eval:?}"
    );
    assert!(
        tail(&hift) < hift[0] && hift_eval[hift_eval.len() - 1] < hift_eval[0],
        "vocoder {hift:?} {hift_eval:?}"
    );

    // Every part's TensorBoard event file holds exactly its metrics.jsonl, and its loss.svg
    // marks each held-out point; plots.html shows them all.
    for part in ["lm", "decoder/flow", "decoder/hift"] {
        crate::tensorboard::assert_matches_metrics(&output.join(part));
        assert!(output.join(part).join("loss.svg").is_file(), "{part}");
    }
    let svg = std::fs::read_to_string(output.join("lm/loss.svg")).unwrap();
    assert_eq!(
        svg.matches("<circle").count(),
        evals.len() + 1,
        "markers + legend"
    );
    let index = std::fs::read_to_string(output.join("plots.html")).unwrap();
    for plot in [
        "lm/loss.svg",
        "decoder/flow/loss.svg",
        "decoder/hift/loss.svg",
    ] {
        assert!(index.contains(&format!("src=\"{plot}\"")), "{index}");
    }

    // The package: merged LM with tokenizer, adapter, decoder, plots, card, manifest.
    let package = output.join("arp-model");
    for file in [
        "README.md",
        "recipe.yaml",
        "glm-4-voice-9b/config.json",
        "glm-4-voice-9b/model.safetensors.index.json",
        "glm-4-voice-9b/tokenizer.model",
        "glm-4-voice-9b/tokenizer_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "glm-4-voice-decoder/config.yaml",
        "glm-4-voice-decoder/flow.safetensors",
        "glm-4-voice-decoder/hift.safetensors",
        "plots/lm-loss.svg",
        "plots/flow-loss.svg",
        "plots/vocoder-loss.svg",
    ] {
        assert!(package.join(file).is_file(), "{file}");
    }
    assert_eq!(
        std::fs::read(package.join("glm-4-voice-decoder/flow.safetensors")).unwrap(),
        std::fs::read(output.join("decoder/model/flow.safetensors")).unwrap()
    );
    let m = manifest(&package);
    assert_eq!(
        (
            m["lm"]["trained"].as_bool(),
            m["decoder"]["trained"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(m["lm"]["curves"]["lm"]["steps"], 120);
    assert_eq!(m["decoder"]["curves"]["vocoder"]["steps"], 12);
    assert_eq!(m["data"]["train_utterances"], 9);
    let card = std::fs::read_to_string(package.join("README.md")).unwrap();
    for expected in [
        "# arp-model-ada: Ada (The Tiny Lab)",
        "Trained stages: lm, decoder.",
        "| lm (lm) | 120 steps |",
        "| decoder (flow) | 40 steps |",
        "model_server.py --model-path \"$PACKAGE/glm-4-voice-9b\"",
        "tools/data/decoder_convert.py to-pt",
        "> You are Ada from The Tiny Lab.",
    ] {
        assert!(
            card.contains(expected),
            "{expected:?} missing from the card:\n{card}"
        );
    }
    // A card for the Hugging Face hub, and no path of this machine in the card or manifest.
    assert!(
        card.starts_with("---\nlanguage:\n- \"en\"\nlicense: other\n")
            && card.contains("base_model: THUDM/glm-4-voice-9b\n")
            && card.contains("\n---\n\n# arp-model-ada"),
        "{card}"
    );
    let manifest_text = std::fs::read_to_string(package.join("arp-model.json")).unwrap();
    for (name, text) in [("README.md", &card), ("arp-model.json", &manifest_text)] {
        for path in [repo(), dir.path().to_path_buf()] {
            let path = path.display().to_string();
            assert!(!text.contains(&path), "{name} names {path}:\n{text}");
        }
    }
    // One final loss: the run's summary line and the card show the same number.
    let lm_curve = &m["lm"]["curves"]["lm"];
    let sig4 = |key: &str| arp_train::progress::sig4(lm_curve[key].as_f64().unwrap());
    let (first, last) = (sig4("first_loss"), sig4("final_loss"));
    assert!(
        stdout.contains(&format!(
            "train {first} -> {last} (final: mean of the last 5 steps)"
        )),
        "{first} -> {last}:\n{stdout}"
    );
    assert!(card.contains(&format!("| {first} -> {last} |")), "{card}");
    let log = std::fs::read_to_string(output.join("logs/run.log")).unwrap();
    assert!(
        log.contains("starting run") && log.contains("package: arp-model-ada"),
        "{log}"
    );

    // generate and synth on the package itself.
    let codes = dir.path().join("reply.json");
    let out = arp_train(
        &repo(),
        &[
            "generate",
            "--model",
            &package.display().to_string(),
            "--prompt",
            "What are you working on?",
            "--max-new-tokens",
            "40",
            "--temperature",
            "0.8",
            "--seed",
            "3",
            "--codes-out",
            &codes.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ARP-Model package arp-model-ada (Ada)"),
        "{}",
        text(&out.stderr)
    );
    let reply: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&codes).unwrap()).unwrap();
    let n_codes = reply["codes"].as_array().unwrap().len();
    println!(
        "package reply: {:?} with {n_codes} speech codes",
        reply["text"]
    );
    // The reply must carry speech for synth; if sampling gave none, synthesize the held-out
    // style tokens instead would hide a bug, so it is an error.
    assert!(
        n_codes > 0,
        "the package's reply has no speech codes: {reply}"
    );
    let wav = dir.path().join("reply.wav");
    let out = arp_train(
        &repo(),
        &[
            "synth",
            "--decoder",
            &package.display().to_string(),
            "--codes",
            &codes.display().to_string(),
            "--out",
            &wav.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 22_050);
    assert!(reader.len() > 0);
    println!(
        "tiny recipe end to end: {trained:.1} s of training, {:.1} s with generate + synth",
        started.elapsed().as_secs_f64()
    );
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "the tiny recipe must run end to end in under 10 minutes"
    );

    // ARP-Eval on the package: it speaks the held-out line, the scores land in its manifest and
    // card, and the LLM judge (a local stub) rates the package LM's reply.
    let (url, requests) = crate::eval_cli::stub_judge("8");
    let judge = crate::eval_cli::judge_file(dir.path(), &url);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args([
            "eval",
            "--model",
            &package.display().to_string(),
            "--judge",
            &judge,
        ])
        .env("ARP_TEST_JUDGE_KEY", "k")
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    println!("{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("eval/eval.json")).unwrap())
            .unwrap();
    assert_eq!(report["mode"], "package");
    let line = report["candidates"][0]["id"].as_str().unwrap();
    assert!(output.join(format!("eval/generated/{line}.wav")).is_file());
    assert!(
        report["candidates"][0]["ap_matched"].is_number(),
        "{report}"
    );
    assert_eq!(
        report["content"]["content_quality"]["mean"], 8.0,
        "{report}"
    );
    assert_eq!(requests.lock().unwrap().len(), 2);
    let m = manifest(&package);
    assert!(
        m["scores"]["candidates"]["ap_centroid"]["mean"].is_number(),
        "{m}"
    );
    let card = std::fs::read_to_string(package.join("README.md")).unwrap();
    assert!(
        card.contains("| AP: cosine to character centroid |"),
        "{card}"
    );
    let listed = |path: &str| {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .map(|f| f["bytes"].as_u64().unwrap())
    };
    assert_eq!(listed("README.md"), Some(card.len() as u64));
    // The eval plot joins the package's plots and the run's page of plots.
    let eval_plot = std::fs::read(package.join("plots/eval.svg")).unwrap();
    assert_eq!(
        eval_plot,
        std::fs::read(output.join("eval/eval.svg")).unwrap()
    );
    assert_eq!(listed("plots/eval.svg"), Some(eval_plot.len() as u64));
    assert!(card.contains("`plots/eval.svg`"), "{card}");
    let index = std::fs::read_to_string(output.join("plots.html")).unwrap();
    assert!(index.contains("src=\"eval/eval.svg\""), "{index}");

    // A judge that refuses the key and echoes it (as OpenAI-compatible servers do): the key is
    // in no output, no log and no file of the run or its package.
    let secret = "sk-test-0123456789abcdefSECRET";
    let (url, _) = crate::eval_cli::stub_endpoint(
        "401 Unauthorized",
        serde_json::json!({"error": {"message": format!(
            "Incorrect API key provided: {secret}. Authorization: Bearer {secret}"
        )}})
        .to_string(),
    );
    let judge = crate::eval_cli::judge_file(dir.path(), &url);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args([
            "eval",
            "--model",
            &package.display().to_string(),
            "--judge",
            &judge,
        ])
        .env("ARP_TEST_JUDGE_KEY", secret)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("answered HTTP 401"),
        "{}",
        text(&out.stderr)
    );
    let mut leaks = Vec::new();
    for printed in [&out.stdout, &out.stderr] {
        if String::from_utf8_lossy(printed).contains("0123456789abcdef") {
            leaks.push("stdout/stderr".to_string());
        }
    }
    let mut stack = vec![output.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                .contains("0123456789abcdef")
            {
                leaks.push(path.display().to_string());
            }
        }
    }
    assert!(leaks.is_empty(), "the judge's key leaked into {leaks:?}");
    // A key pasted where the variable's name belongs is refused without being echoed.
    let pasted = dir.path().join("pasted.yaml");
    std::fs::write(
        &pasted,
        std::fs::read_to_string(&judge).unwrap().replace(
            "api_key_env: ARP_TEST_JUDGE_KEY",
            &format!("api_key_env: {secret}"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(["eval", "--model", &package.display().to_string(), "--judge"])
        .arg(&pasted)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("api_key_env must be the name of an environment variable"),
        "{stderr}"
    );
    assert!(!stderr.contains("0123456789abcdef"), "{stderr}");

    // Rerunning the finished recipe skips every stage and keeps the (scored) package.
    let before = package_files(&output);
    let out = arp_train(&repo(), &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for expected in [
        "prepare  skipped: no selected stage trains",
        "stage one (lm): done, skipped",
        "stage two (decoder): done, skipped",
        "package: up to date",
    ] {
        assert!(stdout.contains(expected), "{expected:?}:\n{stdout}");
    }
    assert_eq!(package_files(&output), before);
}

/// The kill-and-rerun test's run: every stage, few steps.
fn short_args(output: &Path, cache: &Path) -> Vec<String> {
    crate::common::tiny_run_args(
        output,
        cache,
        &[
            "lm.steps=12",
            "lm.checkpoint_every=4",
            "lm.eval_every=4",
            "decoder.flow.steps=12",
            "decoder.flow.checkpoint_every=4",
            "decoder.hift.steps=4",
            "decoder.hift.checkpoint_every=2",
            "decoder.hift.max_frames_per_batch=32",
        ],
    )
}

fn short_run(output: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = short_args(output, cache);
    args.extend(extra.iter().map(|s| s.to_string()));
    crate::common::arp_train_env(&args, env)
}

/// xorshift64: the test's "random" kill points, reproducible from the seed.
fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}

#[test]
fn runs_killed_or_signalled_in_every_stage_end_with_the_same_package() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let straight = dir.path().join("straight");
    let out = short_run(&straight, &cache, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference = package_files(&straight);
    let reference_card = std::fs::read_to_string(straight.join("arp-model/README.md")).unwrap();

    let mut draw = draws(0x5eed_2026);
    let lm_abort = 4 * (2 + draw(2)); // while writing the step-8 or step-12 checkpoint
    let flow_lines = 2 + draw(10) as usize; // SIGKILL once the flow has logged this many lines
    let hift_abort = 2 * (1 + draw(2)); // while writing the step-2 or step-4 checkpoint
    println!("kill points: lm checkpoint {lm_abort}, flow after {flow_lines} metric lines, vocoder checkpoint {hift_abort}, package assembly");
    let killed = dir.path().join("killed");

    // 1. Stage one aborts while writing a checkpoint.
    let lm_step = lm_abort.to_string();
    let out = short_run(
        &killed,
        &cache,
        &[],
        &[("ARP_FAULT_ABORT_IN_CHECKPOINT", &lm_step)],
    );
    assert!(!out.status.success());
    assert!(!killed.join("lm/done.json").exists());
    // Killed mid-stage, the part already has its plot and an event file as far as its metrics.
    assert!(killed.join("lm/loss.svg").is_file());
    crate::tensorboard::assert_matches_metrics(&killed.join("lm"));
    let out = short_run(&killed, &cache, &["--dry-run"], &[]);
    let expected = format!("lm       resumes: from step {} of 12", lm_abort - 4);
    assert!(
        text(&out.stdout).contains(&expected),
        "{expected:?}:\n{}",
        text(&out.stdout)
    );

    // 2. SIGKILL in the flow, from outside, at a seeded number of logged lines.
    let mut child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(short_args(&killed, &cache))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = killed.join("decoder/flow/metrics.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < flow_lines
        && start.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the run must be killed in the flow");
    let flow = killed.join("decoder/flow");
    assert!(flow.join("loss.svg").is_file());
    let logged = crate::tensorboard::read(&flow.join("events.out.tfevents.arp-train")).steps;
    let metrics_steps = crate::tensorboard::expected_from_metrics(&flow);
    // A SIGKILL between the two writes of a step leaves the event file one step behind.
    assert!(
        logged.len() + 1 >= metrics_steps.len()
            && logged
                .iter()
                .all(|(step, s)| metrics_steps.get(step) == Some(s)),
        "events {logged:?}\nmetrics {metrics_steps:?}"
    );
    assert!(
        killed.join("lm/done.json").exists(),
        "stage one finished first"
    );
    assert!(!killed.join("decoder/done.json").exists());

    // 3. The vocoder aborts while writing a checkpoint.
    let hift_step = hift_abort.to_string();
    let out = short_run(
        &killed,
        &cache,
        &[],
        &[("ARP_FAULT_HIFT_ABORT_IN_CHECKPOINT", &hift_step)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("stage one (lm): done, skipped"),
        "{}",
        text(&out.stdout)
    );
    assert!(!killed.join("decoder/done.json").exists());

    // 4. The package assembly aborts halfway: no package, only a temporary directory.
    let out = short_run(&killed, &cache, &[], &[("ARP_FAULT_ABORT_IN_PACKAGE", "1")]);
    assert!(!out.status.success());
    assert!(killed.join("decoder/done.json").exists());
    assert!(!killed.join("arp-model").exists());

    // The plain rerun finishes it: the same package, file by file.
    let out = short_run(&killed, &cache, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("stage two (decoder): done, skipped")
            && stdout.contains("package: arp-model-ada"),
        "{stdout}"
    );
    assert_eq!(package_files(&killed), reference);
    // The resumed runs' event files hold each step once, with the uninterrupted run's losses.
    for part in ["lm", "decoder/flow", "decoder/hift"] {
        crate::tensorboard::assert_matches_metrics(&killed.join(part));
        let losses = |run: &Path| -> Vec<(i64, Option<f32>, Option<f32>)> {
            crate::tensorboard::read(&run.join(part).join("events.out.tfevents.arp-train"))
                .steps
                .into_iter()
                .map(|(step, s)| {
                    (
                        step,
                        s.get("train/loss").copied(),
                        s.get("eval/loss").copied(),
                    )
                })
                .collect()
        };
        assert_eq!(losses(&killed), losses(&straight), "{part}");
    }
    assert_eq!(
        std::fs::read_to_string(killed.join("arp-model/README.md")).unwrap(),
        reference_card
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&killed)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");

    // SIGTERM in stage one, SIGINT in the flow: each stops after the step in progress with a
    // checkpoint; two signals in the vocoder stop at once. The reruns end with the same package.
    let signalled = dir.path().join("signalled");
    let lm_lines = 2 + draw(8) as usize;
    let stop = signal_after(
        &signalled,
        &cache,
        "lm/metrics.jsonl",
        lm_lines,
        &[libc::SIGTERM],
    );
    stop.assert_graceful("stage one (lm)", 143, &signalled.join("lm"));
    let flow_lines = 2 + draw(8) as usize;
    let stop = signal_after(
        &signalled,
        &cache,
        "decoder/flow/metrics.jsonl",
        flow_lines,
        &[libc::SIGINT],
    );
    assert!(signalled.join("lm/done.json").exists());
    stop.assert_graceful("stage two (flow)", 130, &signalled.join("decoder/flow"));
    let stop = signal_after(
        &signalled,
        &cache,
        "decoder/hift/metrics.jsonl",
        2,
        &[libc::SIGTERM, libc::SIGTERM],
    );
    assert_eq!(stop.code, Some(143), "{}", stop.stderr);
    assert!(
        !stop.stderr.contains("stopped:"),
        "a second signal stops at once:\n{}",
        stop.stderr
    );
    let out = short_run(&signalled, &cache, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(package_files(&signalled), reference);
}

/// How a run signalled from outside ended.
struct Signalled {
    code: Option<i32>,
    stderr: String,
    /// Steps logged when the first signal was sent.
    steps_at_signal: usize,
    seconds_to_exit: f64,
}

impl Signalled {
    /// Stopped after the step in progress, with a checkpoint of that step, and said so.
    fn assert_graceful(&self, part: &str, code: i32, checkpoints: &Path) {
        assert_eq!(self.code, Some(code), "{}", self.stderr);
        let prefix = format!("stopped: {part} stopped by ");
        let at = self
            .stderr
            .find(&prefix)
            .unwrap_or_else(|| panic!("{}", self.stderr));
        let rest = &self.stderr[at..];
        let step: usize = rest
            .split("after step ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            step == self.steps_at_signal || step == self.steps_at_signal + 1,
            "signalled after {} steps, stopped after {step}",
            self.steps_at_signal
        );
        assert!(checkpoints
            .join(format!("step-{step:06}/complete"))
            .is_file());
        println!(
            "{part}: signalled after step {}, stopped after step {step}, {:.2} s later",
            self.steps_at_signal, self.seconds_to_exit
        );
    }
}

/// Runs the short recipe into `output` and sends `signals` (50 ms apart; the second once the
/// first was acknowledged) once `metrics` (relative to `output`) has `lines` lines.
fn signal_after(
    output: &Path,
    cache: &Path,
    metrics: &str,
    lines: usize,
    signals: &[i32],
) -> Signalled {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(short_args(output, cache))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let metrics = output.join(metrics);
    let logged = || std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
    let start = Instant::now();
    while logged() < lines && start.elapsed() < Duration::from_secs(300) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The metrics' first line is the step-0 evaluation.
    let steps_at_signal = logged().saturating_sub(1);
    let sent = Instant::now();
    for (i, &signal) in signals.iter().enumerate() {
        if i > 0 {
            while !std::fs::read_to_string(log.path())
                .unwrap()
                .contains("signal again")
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run stopped before the second signal"
            );
        }
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    }
    let status = child.wait().unwrap();
    Signalled {
        code: status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| 128 + s)
        }),
        stderr: std::fs::read_to_string(log.path()).unwrap(),
        steps_at_signal,
        seconds_to_exit: sent.elapsed().as_secs_f64(),
    }
}

#[test]
fn stages_can_be_picked_and_the_package_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    let cache = dir.path().join("cache");
    let out = short_run(&output, &cache, &["--stages", "package"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("the package needs finished stages: lm and decoder not done yet"),
        "{}",
        text(&out.stderr)
    );
    let out = short_run(&output, &cache, &["--stages", "lm,prepare"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("stage one (lm): 12 steps"), "{stdout}");
    assert!(!stdout.contains("stage two"), "{stdout}");
    assert!(!output.join("decoder").exists() && !output.join("arp-model").exists());
    let out = short_run(&output, &cache, &["--stages", "lm,lm"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--stages: \"lm\" is listed twice"));
    let out = short_run(&output, &cache, &["--stages", "decoder,vocoder"], &[]);
    assert!(text(&out.stderr).contains("--stages: unknown stage \"vocoder\""));
    // The dry run tells what is done and what would run.
    let out = short_run(&output, &cache, &["--dry-run"], &[]);
    let stdout = text(&out.stdout);
    for expected in [
        "lm       done (lm 12 steps): skipped",
        "decoder  runs: flow 12 steps, vocoder 4 steps",
        "package  assembles the ARP-Model once lm and decoder are done",
    ] {
        assert!(stdout.contains(expected), "{expected:?}:\n{stdout}");
    }
}

/// The steps the dry run prints are the steps the trainers take: for a recipe whose three
/// parts train by epochs (so the counts follow from the data: samples per batch for the LM,
/// frame-filled batches for the flow, crops for the vocoder), each part trains exactly the
/// total its plan line printed.
#[test]
fn an_epoch_based_run_trains_the_steps_its_dry_run_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let output = dir.path().join("epochs");
    let args = crate::common::tiny_run_args(
        &output,
        &cache,
        &[
            "lm.steps=null",
            "lm.epochs=2",
            "decoder.flow.steps=null",
            "decoder.flow.epochs=2",
            "decoder.hift.steps=null",
            "decoder.hift.epochs=1",
        ],
    );
    let dry: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--dry-run".to_string()])
        .collect();
    let out = crate::common::arp_train_env(&dry, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let planned = |part: &str| -> (usize, usize) {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!(". {part:<8} train ")))
            .unwrap_or_else(|| panic!("no plan line for {part}:\n{stdout}"));
        let numbers: Vec<usize> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[1], numbers[2])
    };
    let out = crate::common::arp_train_env(&args, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Logs redirected to a pipe: plain text, rounded figures, the held-out loss and the ETA.
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in a redirected log:\n{stderr}"
    );
    assert!(
        stderr.contains(" INFO stage one step=0 held_out=")
            && stderr
                .lines()
                .any(|l| l.contains(" INFO stage one step=10 ") && l.contains(" run_eta=")),
        "{stderr}"
    );
    for line in stderr.lines().filter(|l| l.contains(" loss=")) {
        let loss = line
            .split(" loss=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let significant = loss.trim_start_matches(['0', '.']);
        let digits = significant.chars().filter(|c| c.is_ascii_digit()).count();
        assert!(digits <= 4, "{loss} is not rounded to 4 digits: {line}");
    }
    let curve_steps = |stage: &str, curve: &str| -> usize {
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(output.join(stage).join("done.json")).unwrap(),
        )
        .unwrap();
        record["curves"][curve]["steps"].as_u64().unwrap() as usize
    };
    for (part, stage, curve) in [
        ("lm", "lm", "lm"),
        ("flow", "decoder", "flow"),
        ("hift", "decoder", "vocoder"),
    ] {
        let (total, per_epoch) = planned(part);
        assert!(
            per_epoch > 1,
            "{part}: more than one batch an epoch:\n{stdout}"
        );
        assert_eq!(curve_steps(stage, curve), total, "{part}:\n{stdout}");
    }
}

#[test]
fn the_decoupling_sweep_runs_to_its_summary() {
    crate::common::speaker_encoder_weights();
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let sweep_dir = dir.path().join("sweep");
    let mut args: Vec<String> = vec![
        "sweep".into(),
        "recipes/sweeps/tiny-decoupling.yaml".into(),
        "--output".into(),
        sweep_dir.display().to_string(),
    ];
    for set in [
        format!("data.cache_dir={}", cache.display()),
        "lm.steps=8".into(),
        "lm.checkpoint_every=4".into(),
        "decoder.flow.steps=6".into(),
        "decoder.flow.checkpoint_every=3".into(),
        "decoder.hift.steps=2".into(),
        "decoder.hift.checkpoint_every=2".into(),
        "decoder.hift.max_frames_per_batch=32".into(),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = arp_train(&repo(), &argv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = std::fs::read_to_string(sweep_dir.join("summary.md")).unwrap();
    println!("{summary}");
    for expected in [
        "| both-stages | (base recipe) | done | lm+decoder | 8 |",
        "| freeze-lm | freeze=[lm] | done | decoder | - | - | - |",
        "| freeze-decoder | freeze=[decoder] | done | lm | 8 |",
    ] {
        assert!(summary.contains(expected), "{expected:?}:\n{summary}");
    }
    let csv = std::fs::read_to_string(sweep_dir.join("summary.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert_eq!(rows[0][0], "run");
    // The frozen decoder is the original one, byte for byte; the frozen LM the base model.
    let kept =
        std::fs::read(repo().join("models/tiny/glm-4-voice-decoder/flow.safetensors")).unwrap();
    let packaged = std::fs::read(
        sweep_dir.join("freeze-decoder/arp-model/glm-4-voice-decoder/flow.safetensors"),
    )
    .unwrap();
    assert!(kept == packaged);
    let base = std::fs::read(repo().join("models/tiny/glm-4-voice-9b/model.safetensors")).unwrap();
    let packaged =
        std::fs::read(sweep_dir.join("freeze-lm/arp-model/glm-4-voice-9b/model.safetensors"))
            .unwrap();
    assert!(base == packaged);
    // Package files are copies: editing one in place leaves the base model it came from alone.
    for (source, in_package) in [
        (
            "models/tiny/glm-4-voice-9b/config.json",
            "freeze-lm/arp-model/glm-4-voice-9b/config.json",
        ),
        (
            "models/tiny/glm-4-voice-decoder/config.yaml",
            "freeze-decoder/arp-model/glm-4-voice-decoder/config.yaml",
        ),
    ] {
        let (source, in_package) = (repo().join(source), sweep_dir.join(in_package));
        let original = std::fs::read(&source).unwrap();
        let packaged = std::fs::read(&in_package).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&in_package)
            .unwrap();
        std::io::Write::write_all(&mut file, b"\n# edited in the package\n").unwrap();
        drop(file);
        assert_eq!(
            std::fs::read(&source).unwrap(),
            original,
            "{}",
            source.display()
        );
        std::fs::write(&in_package, packaged).unwrap();
    }
    let m = manifest(&sweep_dir.join("freeze-lm/arp-model"));
    assert_eq!(m["lm"]["trained"], false);
    assert_eq!(m["adapter"], serde_json::Value::Null);
    // Each trained stage's numbers match the run's own records (both runs train the same LM).
    let both = manifest(&sweep_dir.join("both-stages/arp-model"));
    let frozen_decoder = manifest(&sweep_dir.join("freeze-decoder/arp-model"));
    assert_eq!(both["lm"]["curves"], frozen_decoder["lm"]["curves"]);

    // A rerun skips every finished run; with --eval it scores their packages for the summary.
    let rerun: Vec<&str> = argv.iter().copied().chain(["--eval"]).collect();
    let out = arp_train(&repo(), &rerun);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("complete: skipped").count(),
        3,
        "{}",
        text(&out.stdout)
    );
    let summary = std::fs::read_to_string(sweep_dir.join("summary.md")).unwrap();
    assert_eq!(
        summary.matches("| done (earlier) |").count(),
        3,
        "{summary}"
    );
    let csv = std::fs::read_to_string(sweep_dir.join("summary.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let column = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    let (time, ap) = (
        column("train time"),
        column("AP: cosine to character centroid"),
    );
    for row in &rows[1..] {
        assert!(row[time].ends_with('s'), "train time of {}: {csv}", row[0]);
        let score: f64 = row[ap]
            .parse()
            .unwrap_or_else(|_| panic!("AP of {}: {csv}", row[0]));
        assert!((-1.0..=1.0).contains(&score), "{csv}");
    }

    // The dry run: a moved cache retrains nothing (the package's recipe.yaml is rewritten);
    // other training settings are refused by name.
    let moved: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("data.cache_dir=") {
                "data.cache_dir=/elsewhere/cache".to_string()
            } else {
                a.clone()
            }
        })
        .chain(["--dry-run".to_string()])
        .collect();
    let argv: Vec<&str> = moved.iter().map(String::as_str).collect();
    let out = arp_train(&repo(), &argv);
    assert_eq!(
        text(&out.stdout)
            .matches("stages done: assembles the package")
            .count(),
        3,
        "{}",
        text(&out.stdout)
    );
    let mut changed = argv.clone();
    changed.extend(["--set", "lm.steps=9"]);
    let out = arp_train(&repo(), &changed);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches("REFUSED (its directory holds another recipe's run: lm.steps: finished with 8 / now 9)").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("stages done: assembles the package").count(),
        1,
        "{stdout}"
    );
}

#[test]
fn a_second_run_on_a_busy_directory_is_refused_and_the_first_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let run = dir.path().join("run");
    let args = |lr: &str| {
        let mut args = crate::common::tiny_run_args(
            &run,
            &cache,
            &["lm.steps=40", &format!("lm.optimizer.lr={lr}")],
        );
        args.extend(["--stages", "lm"].map(String::from));
        args
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(args("1e-3"))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = run.join(arp_train::run_lock::LOCK_FILE);
    let start = Instant::now();
    while !lock.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(lock.exists(), "the first run takes the lock");

    let second = crate::common::arp_train_env(&args("5e-3"), &[]);
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another run is using") && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was still running when the second was refused"
    );

    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!lock.exists(), "released when the run ends");
    // The first run's files are its own: its learning rate, one line per step.
    let resolved = std::fs::read_to_string(run.join("recipe.resolved.yaml")).unwrap();
    assert!(resolved.contains("lr: 0.001"), "{resolved}");
    let steps = std::fs::read_to_string(run.join("lm/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].is_f64())
        .count();
    assert_eq!(steps, 40, "one metrics line per step");
}
