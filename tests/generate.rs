//! The inference prompt format and `arp-train generate` on the tiny model.

use arp_train::data::prompt::{
    inference_prompt, split_reply, system_text, UserTurn, TEXT_INSTRUCTION,
};
use arp_train::models::glm4::tokenizer::GlmTokenizer;

use crate::common::{arp_train, repo, text};

#[test]
fn prompts_follow_glm_4_voice_format() {
    let tok = GlmTokenizer::load(&repo().join("models/tiny/glm-4-voice-9b")).unwrap();
    let turn = UserTurn::Text("Is the kettle on fire?");
    let system = system_text(&turn, Some("You are Ada."));
    assert_eq!(system, format!("{TEXT_INSTRUCTION}\nYou are Ada."));
    let ids = inference_prompt(&tok, &system, &turn).unwrap();
    assert_eq!(
        tok.decode(&ids).unwrap(),
        format!("[gMASK]<sop><|system|>\n{system}<|user|>\nIs the kettle on fire?<|assistant|>streaming_transcription\n")
    );
    let codes = [3u32, 4095, 17];
    let speech = UserTurn::Speech(&codes);
    let ids = inference_prompt(&tok, &system_text(&speech, None), &speech).unwrap();
    let decoded = tok.decode(&ids).unwrap();
    assert!(decoded.contains("<|user|>\n<|begin_of_audio|><|audio_3|><|audio_4095|><|audio_17|><|end_of_audio|><|assistant|>"), "{decoded}");
    assert!(
        decoded.contains("13 text token followed by 26 audio tokens. <|user|>"),
        "speech instruction keeps its trailing space"
    );
    let reply = [
        tok.encode_text("Hi").unwrap(),
        vec![tok.audio_id(9).unwrap(), tok.token_id("<|user|>").unwrap()],
    ]
    .concat();
    assert_eq!(
        split_reply(&tok, &reply).unwrap(),
        ("Hi".to_string(), vec![9])
    );
}

#[test]
fn generate_answers_text_and_speech_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let codes = dir.path().join("codes.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            "models/tiny/glm-4-voice-9b",
            "--max-new-tokens",
            "12",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        let out = arp_train(&repo(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let codes_arg = codes.display().to_string();
    let (first, stderr) = run(&["--prompt", "Hello there", "--codes-out", &codes_arg]);
    assert!(stderr.contains("tokens generated"), "{stderr}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&codes).unwrap()).unwrap();
    assert!(written["codes"].is_array() && written["text"].is_string());
    let (again, _) = run(&["--prompt", "Hello there"]);
    assert_eq!(first, again, "greedy decoding is deterministic");
    let (a, _) = run(&[
        "--prompt",
        "Hello there",
        "--temperature",
        "1.0",
        "--seed",
        "7",
    ]);
    let (b, _) = run(&[
        "--prompt",
        "Hello there",
        "--temperature",
        "1.0",
        "--seed",
        "7",
    ]);
    assert_eq!(a, b, "sampling is reproducible for a seed");
    run(&[
        "--prompt-audio",
        "data/tiny-lab/wavs/tinylab-solo-ada-01.wav",
        "--speech-tokenizer",
        "models/tiny/glm-4-voice-tokenizer",
    ]);
    let out = arp_train(
        &repo(),
        &[
            "generate",
            "--model",
            "models/tiny/glm-4-voice-9b",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give exactly one of --prompt TEXT or --prompt-audio AUDIO"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sampling_settings_that_mean_nothing_are_refused() {
    for (flag, value) in [
        ("--temperature", "nan"),
        ("--temperature", "-1"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
    ] {
        let out = arp_train(
            &repo(),
            &[
                "generate",
                "--model",
                "models/tiny/glm-4-voice-9b",
                "--prompt",
                "Hi",
                // `=`, so that clap reads "-1" as the value, not as a flag.
                &format!("{flag}={value}"),
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}
