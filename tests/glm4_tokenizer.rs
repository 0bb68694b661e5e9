//! The GLM-4 tokenizer converted from a tiktoken rank file, against Python's `tiktoken` on the
//! same file (tools/fixtures/glm4_tokenizer_reference.py), and its special and audio ids.

use arp_train::models::glm4::tokenizer::GlmTokenizer;

use crate::common::repo;

#[test]
fn encodes_exactly_like_tiktoken() {
    let tokenizer = GlmTokenizer::load(&repo().join("models/tiny/glm-4-voice-9b")).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/glm4_tokenizer/expected.json")).unwrap(),
    )
    .unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut tokens = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode_text(text).unwrap();
        assert_eq!(got, want, "{text:?}");
        assert_eq!(
            tokenizer.decode(&got).unwrap(),
            text,
            "round trip of {text:?}"
        );
        tokens += got.len();
    }
    println!(
        "tokenizer: {} texts, {tokens} tokens, identical to tiktoken",
        cases.len()
    );
}

#[test]
fn special_and_audio_ids_come_from_the_tokenizer() {
    let tokenizer = GlmTokenizer::load(&repo().join("models/tiny/glm-4-voice-9b")).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/glm4_tokenizer/expected.json")).unwrap(),
    )
    .unwrap();
    let base = expected["base_vocab"].as_u64().unwrap() as u32;
    let audio_start = expected["audio_start"].as_u64().unwrap() as u32;
    assert_eq!(
        tokenizer.prefix().unwrap(),
        vec![base + 2, base + 4],
        "[gMASK]<sop>"
    );
    assert_eq!(tokenizer.token_id("<|user|>").unwrap(), base + 7);
    assert_eq!(tokenizer.audio_tokens(), 4096);
    assert_eq!(tokenizer.audio_id(0).unwrap(), audio_start);
    assert_eq!(tokenizer.audio_code(audio_start + 17), Some(17));
    assert_eq!(tokenizer.audio_code(base + 7), None);
    assert!(tokenizer.audio_id(4096).is_err());
    let ids = [
        tokenizer.token_id("<|assistant|>").unwrap(),
        tokenizer.audio_id(5).unwrap(),
    ];
    assert_eq!(tokenizer.decode(&ids).unwrap(), "<|assistant|><|audio_5|>");
    let err = GlmTokenizer::load(&repo().join("models/tiny"))
        .err()
        .unwrap();
    assert!(
        err.contains("no tokenizer.json or tokenizer.model"),
        "{err}"
    );
}
