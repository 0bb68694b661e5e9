//! `arp-train eval` end to end on the tiny corpus: the character's real held-out clip scores
//! close to the character and another speaker's clips do not; the report files; a missing
//! speaker encoder; the LLM judge against a local stub server, and skipped when unreachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::{prepared_tiny_cache, repo, text};

fn eval(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arp-train"));
    cmd.arg("eval")
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap()
}

/// An OpenAI-compatible stub: answers every chat completion with `answer` and keeps each
/// request (head and body).
pub fn stub_judge(answer: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let reply = serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]
    });
    stub_endpoint("200 OK", reply.to_string())
}

/// A stub that answers every request with `status` and `reply` (JSON), keeping the requests.
pub fn stub_endpoint(status: &'static str, reply: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push(format!("{head}\n{}", String::from_utf8_lossy(&body)));
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, seen)
}

/// A judge file for `endpoint` with the shipped prompts, the key in $ARP_TEST_JUDGE_KEY.
pub fn judge_file(dir: &Path, endpoint: &str) -> String {
    let path = dir.join("judge.yaml");
    std::fs::write(
        &path,
        format!(
            "endpoint: {endpoint}\nmodel: stub-judge\napi_key_env: ARP_TEST_JUDGE_KEY\nprompts: {}\nmax_lines: 5\ntimeout_s: 20\n",
            repo().join("recipes/judge/prompts.yaml").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn eval_tells_the_character_from_another_voice_and_writes_its_report() {
    crate::common::speaker_encoder_weights();
    let dir = tempfile::tempdir().unwrap();
    let cache = prepared_tiny_cache(dir.path());
    let cache_set = format!("data.cache_dir={}", cache.display());
    let run = dir.path().join("run");
    let run_set = format!("output_dir={}", run.display());
    let (url, requests) = stub_judge("Score: 7");
    let judge = judge_file(dir.path(), &url);
    let recipe = [
        "--recipe",
        "recipes/tiny.yaml",
        "--set",
        &cache_set,
        "--set",
        &run_set,
    ];

    // The recipe's real held-out clip of Ada, against her training clips; content judged by
    // the stub from the real lines.
    let campplus = crate::common::campplus_weights().display().to_string();
    let mut args = recipe.to_vec();
    args.extend(["--judge", &judge, "--campplus-weights", &campplus]);
    let out = eval(&args, &[("ARP_TEST_JUDGE_KEY", "test-key")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    println!("{stdout}");
    assert!(
        stdout.contains("AP: cosine to character centroid"),
        "{stdout}"
    );
    let real = report(&run.join("eval"));
    assert_eq!(real["mode"], "held-out");
    assert!(run.join("eval/eval.svg").is_file());
    let real_ap = real["summary"]["candidates"]["ap_centroid"]["mean"]
        .as_f64()
        .unwrap();
    assert!(real_ap > 0.8, "real Ada vs Ada: {real_ap}");
    // CAM++'s similarity beside Resemblyzer's AP.
    assert!(
        stdout.contains("CAM++: cosine to character centroid"),
        "{stdout}"
    );
    let real_cam = real["summary"]["candidates"]["campplus_centroid"]["mean"]
        .as_f64()
        .unwrap();
    for key in ["wada_snr_db", "hnr_db", "spectral_flatness"] {
        assert!(real["candidates"][0][key].is_number(), "{key}: {real}");
    }
    assert_eq!(real["content"]["content_quality"]["mean"], 7.0);
    assert_eq!(real["content"]["content_personalization"]["n"], 1);
    let seen = requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one line, two questions");
    let reply = real["content"]["lines"][0]["reply"].as_str().unwrap();
    assert!(!reply.is_empty());
    for r in &seen {
        assert!(r.starts_with("POST /v1/chat/completions"), "{r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("authorization: bearer test-key"),
            "{r}"
        );
        assert!(
            r.contains("\"model\":\"stub-judge\"") && r.contains(reply),
            "{r}"
        );
    }

    // Another speaker's clips score far from Ada.
    let bram = dir.path().join("bram");
    std::fs::create_dir_all(&bram).unwrap();
    for name in ["tinylab-solo-bram-04.wav", "tinylab-solo-bram-05.wav"] {
        std::fs::copy(
            repo().join("data/tiny-lab/wavs").join(name),
            bram.join(name),
        )
        .unwrap();
    }
    let bram_out = dir.path().join("bram-eval");
    let mut args = recipe.to_vec();
    args.extend([
        "--wavs",
        bram.to_str().unwrap(),
        "--out",
        bram_out.to_str().unwrap(),
        "--campplus-weights",
        &campplus,
    ]);
    let out = eval(&args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = report(&bram_out);
    let other_ap = other["summary"]["candidates"]["ap_centroid"]["mean"]
        .as_f64()
        .unwrap();
    println!("AP to Ada's centroid: Ada's held-out clip {real_ap:.3}, Bram's clips {other_ap:.3}");
    assert!(other_ap < real_ap - 0.2, "{other_ap} vs {real_ap}");
    let other_cam = other["summary"]["candidates"]["campplus_centroid"]["mean"]
        .as_f64()
        .unwrap();
    println!(
        "CAM++ to Ada's centroid: Ada's held-out clip {real_cam:.3}, Bram's clips {other_cam:.3}"
    );
    assert!(other_cam < real_cam - 0.2, "{other_cam} vs {real_cam}");
    assert_eq!(other["candidates"].as_array().unwrap().len(), 2);

    // Offline: the judge is skipped with the reason, the acoustic scores stand.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let offline = judge_file(dir.path(), &format!("http://{closed}/v1"));
    let mut args = recipe.to_vec();
    args.extend(["--judge", &offline, "--out", bram_out.to_str().unwrap()]);
    let out = eval(&args, &[("ARP_TEST_JUDGE_KEY", "k")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let skipped = report(&bram_out)["content"]["skipped"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(skipped.contains("cannot reach"), "{skipped}");
    assert!(text(&out.stderr).contains("content scores skipped"));
    // No key in the environment: skipped, named.
    let mut args = recipe.to_vec();
    args.extend(["--judge", &judge, "--out", bram_out.to_str().unwrap()]);
    let out = eval(&args, &[]);
    assert!(out.status.success());
    let skipped = report(&bram_out)["content"]["skipped"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(skipped.contains("$ARP_TEST_JUDGE_KEY"), "{skipped}");

    // Missing weights: a usage error that says how to get them.
    let mut args = recipe.to_vec();
    args.extend(["--speaker-encoder", "/nonexistent/encoder.safetensors"]);
    let out = eval(&args, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/encoder.safetensors")
            && stderr.contains("python3 tools/data/resemblyzer_weights.py"),
        "{stderr}"
    );
    // Nothing to compare with.
    let out = eval(&["--wavs", bram.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--reference DIR"));
}
