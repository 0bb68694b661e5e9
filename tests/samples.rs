//! Stage-one sample format: prefix, roles, 13/26 interleave, stop token, label mask, truncation.

use arp_train::data::samples::{
    build_from_cache, interleave, length_bucketed_batches, Built, SampleBuilder, Turn, IGNORE,
};
use arp_train::models::glm4::tokenizer::GlmTokenizer;

use crate::common::repo;

fn tokenizer() -> GlmTokenizer {
    GlmTokenizer::load(&repo().join("models/tiny/glm-4-voice-9b")).unwrap()
}

#[test]
fn interleave_is_13_text_then_26_speech() {
    let text: Vec<u32> = (0..30).collect();
    let speech: Vec<u32> = (100..160).collect();
    let out = interleave(&text, &speech, 13, 26);
    let expected: Vec<u32> = [
        &text[0..13],
        &speech[0..26],
        &text[13..26],
        &speech[26..52],
        &text[26..30],
        &speech[52..60],
    ]
    .concat();
    assert_eq!(out, expected);
    // Text runs out first: the rest of the speech follows; speech runs out first: the rest of the text.
    assert_eq!(
        interleave(&text[..5], &speech, 13, 26),
        [&text[..5], &speech[..]].concat()
    );
    assert_eq!(
        interleave(&text, &speech[..10], 13, 26),
        [&text[..13], &speech[..10], &text[13..]].concat()
    );
    assert_eq!(interleave(&[], &[], 13, 26), Vec::<u32>::new());
}

#[test]
fn sample_layout_is_pinned() {
    let tok = tokenizer();
    let t = |name: &str| tok.token_id(name).unwrap();
    let e = |text: &str| tok.encode_text(text).unwrap();
    let a = |codes: &[u32]| {
        codes
            .iter()
            .map(|&c| tok.audio_id(c).unwrap())
            .collect::<Vec<_>>()
    };
    let builder = SampleBuilder {
        tokenizer: &tok,
        persona: "You are Ada.",
        max_seq_len: 4096,
    };
    let question = Turn {
        by_character: false,
        text: "Is it on fire?".into(),
        speech: Some(vec![1, 2, 3]),
    };
    let earlier = Turn {
        by_character: true,
        text: "Smoke is data.".into(),
        speech: None,
    };
    let opener = Turn {
        by_character: false,
        text: "Hello.".into(),
        speech: None,
    };
    let reply_speech: Vec<u32> = (10..50).collect();
    let reply = Turn {
        by_character: true,
        text: "That is an experiment, a very loud one.".into(),
        speech: Some(reply_speech.clone()),
    };
    let Built::Sample(sample) = builder
        .build("x", &[opener, earlier, question], &reply)
        .unwrap()
    else {
        panic!()
    };

    let system = format!(
        "\n{}\nYou are Ada.",
        arp_train::data::prompt::SPEECH_INSTRUCTION
    );
    let prompt: Vec<u32> = [
        vec![t("[gMASK]"), t("<sop>"), t("<|system|>")],
        e(&system),
        vec![t("<|user|>")],
        e("\n"),
        e("Hello."),
        vec![t("<|assistant|>")],
        e("streaming_transcription\n"),
        e("Smoke is data."),
        vec![t("<|user|>")],
        e("\n"),
        vec![t("<|begin_of_audio|>")],
        a(&[1, 2, 3]),
        vec![t("<|end_of_audio|>"), t("<|assistant|>")],
        e("streaming_transcription\n"),
    ]
    .concat();
    let reply_text = e("That is an experiment, a very loud one.");
    assert!(reply_text.len() > 13, "the reply spans two text chunks");
    let target: Vec<u32> = [
        interleave(&reply_text, &a(&reply_speech), 13, 26),
        vec![t("<|user|>")],
    ]
    .concat();
    assert_eq!(sample.input_ids, [prompt.clone(), target.clone()].concat());
    assert!(sample.labels[..prompt.len()].iter().all(|&l| l == IGNORE));
    assert_eq!(
        sample.labels[prompt.len()..],
        target.iter().map(|&t| t as i64).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        *sample.input_ids.last().unwrap(),
        t("<|user|>"),
        "ends with the stop token"
    );
    assert_eq!(sample.dropped_turns, 0);
}

#[test]
fn oldest_history_goes_first_and_hopeless_samples_are_dropped() {
    let tok = tokenizer();
    let turn = |i: usize| Turn {
        by_character: i % 2 == 1,
        text: format!("Turn number {i} of a long scene."),
        speech: None,
    };
    let context: Vec<Turn> = (0..12).map(turn).collect();
    let reply = Turn {
        by_character: true,
        text: "Fine.".into(),
        speech: Some(vec![5; 20]),
    };
    let full = SampleBuilder {
        tokenizer: &tok,
        persona: "P",
        max_seq_len: 100_000,
    };
    let Built::Sample(all) = full.build("x", &context, &reply).unwrap() else {
        panic!()
    };
    let short = SampleBuilder {
        tokenizer: &tok,
        persona: "P",
        max_seq_len: all.input_ids.len() - 30,
    };
    let Built::Sample(cut) = short.build("x", &context, &reply).unwrap() else {
        panic!()
    };
    assert!(cut.dropped_turns >= 1 && cut.input_ids.len() <= all.input_ids.len() - 30);
    // The cut sample is the full one's system head followed by the newest part of the rest.
    let user = tok.token_id("<|user|>").unwrap();
    let head = all.input_ids.iter().position(|&t| t == user).unwrap();
    let rest = cut.input_ids.len() - head;
    assert_eq!(cut.input_ids[..head], all.input_ids[..head]);
    assert_eq!(
        cut.input_ids[head..],
        all.input_ids[all.input_ids.len() - rest..]
    );
    assert_eq!(
        cut.input_ids[head], user,
        "the cut falls on a turn boundary"
    );
    let tiny = SampleBuilder {
        tokenizer: &tok,
        persona: "P",
        max_seq_len: 20,
    };
    assert!(matches!(tiny.build("x", &context, &reply).unwrap(), Built::TooLong(_, n) if n > 20));
}

#[test]
fn samples_from_the_prepared_tiny_cache() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("data.cache_dir={}", dir.path().display());
    let out = crate::common::arp_train(
        &repo(),
        &["prepare", "--recipe", "recipes/tiny.yaml", "--set", &set],
    );
    assert!(out.status.success());
    let tok = tokenizer();
    let builder = SampleBuilder {
        tokenizer: &tok,
        persona: "You are Ada.",
        max_seq_len: 512,
    };
    let samples = build_from_cache(dir.path(), "ada", &builder).unwrap();
    assert_eq!(samples.samples.len(), 10, "ada's 10 lines");
    assert!(samples.too_long.is_empty());
    for s in &samples.samples {
        let target = s.labels.iter().filter(|&&l| l != IGNORE).count();
        assert!(
            target > 13
                && s.labels[..s.labels.len() - target]
                    .iter()
                    .all(|&l| l == IGNORE),
            "{}",
            s.id
        );
        assert!(
            s.input_ids.iter().any(|&i| tok.audio_code(i).is_some()),
            "{} carries speech tokens",
            s.id
        );
    }
    let lengths: Vec<usize> = samples.samples.iter().map(|s| s.input_ids.len()).collect();
    let (batches, padding) = length_bucketed_batches(&lengths, 2, 4, 42);
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 10);
    let (_, unsorted) = length_bucketed_batches(&lengths, 2, 0, 42);
    println!("tiny samples: lengths {lengths:?}, padding share {padding:.3} bucketed");
    assert!(
        padding <= unsorted + 1e-9 && padding < 0.2,
        "{padding} vs {unsorted}"
    );
}
