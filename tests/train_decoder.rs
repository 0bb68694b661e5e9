//! Stage-two training on the tiny recipe (stage one frozen): exact resume after SIGKILL in the
//! flow and after a crash while a vocoder checkpoint is written, the non-finite guards of both
//! parts, and `synth` on the trained decoder.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo, text};

fn args(output: &Path, cache: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = crate::common::tiny_run_args(
        output,
        cache,
        &[
            "freeze=[lm]",
            "decoder.flow.steps=12",
            "decoder.flow.checkpoint_every=4",
            "decoder.hift.steps=6",
            "decoder.hift.checkpoint_every=2",
            "decoder.hift.max_frames_per_batch=32",
        ],
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run(output: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    crate::common::arp_train_env(&args(output, cache, extra), env)
}

/// Every logged step of a part: (step, loss, grad_norm).
fn curve(output: &Path, part: &str) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(output.join(format!("decoder/{part}/metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["loss"].is_number())
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn weights(output: &Path) -> (Vec<u8>, Vec<u8>) {
    let dir = output.join("decoder/model");
    (
        std::fs::read(dir.join("flow.safetensors")).unwrap(),
        std::fs::read(dir.join("hift.safetensors")).unwrap(),
    )
}

#[test]
fn resumed_decoder_runs_match_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let straight = dir.path().join("straight");
    let out = run(&straight, &cache, &[], &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (flow, hift) = (curve(&straight, "flow"), curve(&straight, "hift"));
    assert_eq!((flow.len(), hift.len()), (12, 6));
    let reference = weights(&straight);

    // SIGKILL in the flow part after its first checkpoint, then --resume.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_arp-train"))
        .args(args(&killed, &cache, &[]))
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !killed.join("decoder/flow/step-000004/complete").exists()
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(still_running, "the run must be killed mid-way");
    assert!(!killed.join("decoder/model").exists());
    let out = run(&killed, &cache, &["--resume"], &[]);
    assert!(
        text(&out.stderr).contains("resuming the decoder flow"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        curve(&killed, "flow"),
        flow,
        "flow loss and gradient norm of every step"
    );
    assert_eq!(curve(&killed, "hift"), hift);
    assert!(weights(&killed) == reference, "identical decoder weights");

    // A crash while the vocoder's step-4 checkpoint is written: resume falls back to step 2.
    let crashed = dir.path().join("crashed");
    let out = run(
        &crashed,
        &cache,
        &[],
        &[("ARP_FAULT_HIFT_ABORT_IN_CHECKPOINT", "4")],
    );
    assert!(!out.status.success());
    assert!(!crashed.join("decoder/hift/step-000004").exists());
    let out = run(&crashed, &cache, &["--resume"], &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resuming the decoder vocoder") && stderr.contains("step-000002"),
        "{stderr}"
    );
    assert_eq!(curve(&crashed, "hift"), hift);
    assert!(weights(&crashed) == reference, "identical decoder weights");

    // Rerunning a finished run trains nothing and keeps the same decoder; a rerun whose
    // stage-two settings differ is refused without touching it.
    let out = run(&straight, &cache, &[], &[]);
    assert!(
        text(&out.stdout).contains("stage two (decoder): done, skipped"),
        "{}",
        text(&out.stdout)
    );
    assert!(weights(&straight) == reference);
    let out = run(&straight, &cache, &["--set", "decoder.flow.steps=14"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("finished with other model or data settings")
            && stderr.contains("decoder.flow.steps: finished with 12 / now 14"),
        "{stderr}"
    );
    assert!(weights(&straight) == reference);

    // synth on the trained decoder: a 22.05 kHz WAV of the length the codes imply.
    let wav = dir.path().join("out.wav");
    let out = crate::common::arp_train(
        &repo(),
        &[
            "synth",
            "--decoder",
            &straight.join("decoder/model").display().to_string(),
            "--tokens",
            "<|audio_12|> <|audio_3000|> 77 1024 9 9 9 400 12 13 14 15 16",
            "--out",
            &wav.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reader = hound::WavReader::open(&wav).unwrap();
    assert_eq!(reader.spec().sample_rate, 22050);
    // 13 tokens at 12.5 Hz = 1.04 s = 89 mel frames = 22784 samples.
    assert_eq!(reader.len(), 89 * 256);
}

#[test]
fn non_finite_decoder_steps_are_skipped_and_too_many_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let once = dir.path().join("once");
    let out = run(&once, &cache, &[], &[("ARP_FAULT_FLOW_NAN_STEPS", "2")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("; 1 skipped"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        curve(&once, "flow").len(),
        11,
        "the skipped step logs no loss"
    );

    let stopped = dir.path().join("stopped");
    let out = run(
        &stopped,
        &cache,
        &["--set", "decoder.hift.max_nonfinite_steps=3"],
        &[("ARP_FAULT_HIFT_NAN_STEPS", "2,3,4")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("3 consecutive decoder vocoder steps had a non-finite loss")
            && stderr.contains("last good weights"),
        "{stderr}"
    );
    assert!(
        stopped.join("decoder/hift/step-000004/complete").exists(),
        "the last good state is saved"
    );
}

#[test]
fn shape_buckets_move_the_flow_loss_only_slightly() {
    // Padding is masked out of the loss, but CosyVoice's length regulator stretches tokens over
    // the padded batch and its GroupNorms normalize over padded frames, as the reference does
    // for any padded batch: the loss moves a little, by a bounded amount.
    use arp_train::data::decoder_data::{frame_batches, DecoderData, Utterance};
    use arp_train::models::decoder::config::DecoderModelConfig;
    use arp_train::models::decoder::fresh_flow;
    use arp_train::recipe::{PathCheck, Recipe};
    use arp_train::rng::Rng;
    use arp_train::train::flow::flow_loss;
    use burn::backend::NdArray;
    type B = NdArray<f32>;
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::common::prepared_tiny_cache(dir.path());
    let sets = vec![format!("data.cache_dir={}", cache.display())];
    let recipe = Recipe::load(&repo().join("recipes/tiny.yaml"), &sets, PathCheck::Lenient)
        .unwrap()
        .recipe;
    let data = DecoderData::load(&recipe).unwrap();
    let config = DecoderModelConfig::from_file(recipe.decoder.config.as_ref().unwrap()).unwrap();
    let device = Default::default();
    let flow = fresh_flow::<B>(&config, 7, &device).model;
    let lengths: Vec<usize> = data.train.iter().map(|u| u.frames).collect();
    let mut worst = 0.0f64;
    for (i, batch) in frame_batches(&lengths, 600, 1).iter().enumerate() {
        let items: Vec<&Utterance> = batch.iter().map(|&j| &data.train[j]).collect();
        let loss = |buckets: bool| -> f64 {
            let mut rng = Rng::for_step(3, 1, i as u64);
            flow_loss(&flow, &items, &mut rng, 0.2, buckets, &device).into_scalar() as f64
        };
        let (plain, padded) = (loss(false), loss(true));
        let gap = (plain - padded).abs() / plain.abs();
        println!(
            "flow batch {i}: {} items, loss {plain:.6} unpadded, {padded:.6} in buckets",
            items.len()
        );
        worst = worst.max(gap);
    }
    println!("flow loss, shape buckets vs none: worst relative gap {worst:.2e}");
    assert!(worst < 0.05, "worst relative gap {worst:e}");
}
