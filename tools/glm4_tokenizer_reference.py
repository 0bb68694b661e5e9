#!/usr/bin/env python3
"""A tiny GLM-4-style tokenizer and the token ids Python's `tiktoken` gives for it.

Trains a small byte-level BPE (256 byte tokens + 320 merges) on the bundled corpus's
transcripts and the character cards, pre-split with GLM-4's regex, and writes it in the layout of
THUDM/glm-4-voice-9b:
  models/tiny/glm-4-voice-9b/tokenizer.model        tiktoken rank file: base64(token) rank
  models/tiny/glm-4-voice-9b/tokenizer_config.json  added tokens (GLM's special tokens, then
                                                    <|audio_0|>..<|audio_4095|> after a gap,
                                                    as in the real file where they start at 152353)
and the expected ids from `tiktoken.Encoding(...).encode(text)` for a list of texts:
  tests/fixtures/glm4_tokenizer/expected.json       [{"text": ..., "ids": [...]}, ...]

Usage: python tools/glm4_tokenizer_reference.py   (pip install tiktoken regex)
"""
import base64
import collections
import glob
import json
import os

import regex
import tiktoken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "tiny", "glm-4-voice-9b")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "glm4_tokenizer", "expected.json")
PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
MERGES = 320
AUDIO_TOKENS = 4096
AUDIO_GAP = 100  # ids left unused between the special tokens and <|audio_0|>
SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
            "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
            "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>"]


def training_text():
    texts = []
    with open(os.path.join(ROOT, "data", "tiny-lab", "manifest.jsonl")) as f:
        for line in f:
            texts.append(json.loads(line)["text"])
    for card in sorted(glob.glob(os.path.join(ROOT, "characters", "*.yaml"))):
        with open(card) as f:
            texts.append(f.read())
    texts.append("streaming_transcription\nUser will provide you with a speech instruction. Do it step by step. "
                 "First, think about the instruction and respond in a interleaved manner, with 13 text token "
                 "followed by 26 audio tokens. ")
    return texts


def train(texts):
    words = collections.Counter()
    for text in texts:
        for piece in regex.findall(PAT, text):
            words[tuple(bytes([b]) for b in piece.encode("utf-8"))] += 1
    ranks = {bytes([b]): b for b in range(256)}
    for _ in range(MERGES):
        pairs = collections.Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-x for x in kv[0][0] + kv[0][1]]))[0]
        merged = best[0] + best[1]
        if merged in ranks:
            break
        ranks[merged] = len(ranks)
        new_words = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return ranks


def main():
    ranks = train(training_text())
    os.makedirs(MODEL_DIR, exist_ok=True)
    with open(os.path.join(MODEL_DIR, "tokenizer.model"), "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")
    base = len(ranks)
    added = {}
    for i, name in enumerate(SPECIALS):
        added[str(base + i)] = {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "special": True}
    audio_start = base + len(SPECIALS) + AUDIO_GAP
    for k in range(AUDIO_TOKENS):
        added[str(audio_start + k)] = {"content": f"<|audio_{k}|>", "lstrip": False, "normalized": False,
                                       "rstrip": False, "single_word": False, "special": False}
    config = {
        "_comment": "Tiny GLM-4-style tokenizer made by tools/glm4_tokenizer_reference.py (layout of THUDM/glm-4-voice-9b).",
        "tokenizer_class": "ChatGLM4Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]},
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIALS[6:],
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False, "do_lower_case": False, "padding_side": "left",
        "model_max_length": 1000000000000000019884624838656, "remove_space": False,
    }
    with open(os.path.join(MODEL_DIR, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)  # one line: 4096 audio entries
        f.write("\n")

    encoding = tiktoken.Encoding(name="tiny-glm4", pat_str=PAT, mergeable_ranks=ranks, special_tokens={})
    texts = training_text()[:30] + [
        "", " ", "  leading and trailing  ", "Hello, World! HELLO world?", "I'm sure you'll see they'd've",
        "numbers 1234567 and 3.14159, 42nd", "tabs\tand\nnewlines\r\n\n  indented", "emoji 🙂 and accents: café, naïve, Zürich",
        "中文也可以：你好，世界。", "symbols <>{}[]()/*-+=_~`@#$%^&|\\", "trailing spaces   \n   ", "'s 'S 'LL x'd",
        "supercalifragilisticexpialidocious", "line one\n\nline three\n",
    ]
    expected = [{"text": t, "ids": encoding.encode(t)} for t in texts]
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w") as f:
        json.dump({"base_vocab": base, "audio_start": audio_start, "cases": expected}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{base} base tokens, specials at {base}..{base + len(SPECIALS) - 1}, audio at {audio_start}; {len(expected)} cases")


if __name__ == "__main__":
    main()
