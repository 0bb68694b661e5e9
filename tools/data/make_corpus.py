#!/usr/bin/env python3
"""Synthesize the bundled tiny corpus: 'The Tiny Lab', three clearly different voices.

Needs the Debian packages espeak-ng, flite and sox (apt-get install -y espeak-ng flite sox);
numpy only for the 44.1 kHz stereo 24-bit test file. Output (committed, ~1.5 MB):

  data/tiny-lab/wavs/*.wav        one clip per line, at each engine's native rate
  data/tiny-lab/scene-04.wav      one whole scene in one file (manifest lines use start/end)
  data/tiny-lab/manifest.jsonl    the manifest (format: docs/manifest.md)
  tests/fixtures/audio/stereo-44k1-24bit.wav   a 44.1 kHz stereo 24-bit clip for front-end tests

Rerunning gives the same files for the same package versions.
"""
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data", "tiny-lab")
SERIES = "The Tiny Lab"

# Each voice: a command line that writes a WAV for `text` to `path`.
VOICES = {
    # Ada: US female, flite slt, 16 kHz.
    "ada": lambda text, path: ["flite", "-voice", "slt", "-t", text, "-o", path],
    # Bram: low US male, espeak-ng, 22.05 kHz.
    "bram": lambda text, path: ["espeak-ng", "-v", "en-us+m3", "-p", "30", "-s", "150", "-w", path, text],
    # Cyrus: Scottish male, flite awb, 16 kHz.
    "cyrus": lambda text, path: ["flite", "-voice", "awb", "-t", text, "-o", path],
}

# Scenes: (episode, [(speaker, text), ...]). Every line becomes a manifest entry whose context
# holds the scene's earlier turns.
SCENES = [
    ("s01e01", [
        ("bram", "Ada, the kettle is on fire again."),
        ("ada", "That is not a fire. That is an experiment."),
        ("cyrus", "Aye, an experiment with smoke."),
        ("ada", "Smoke is data. Write it down."),
    ]),
    ("s01e01", [
        ("cyrus", "Who moved my oscilloscope?"),
        ("ada", "I borrowed it for science."),
        ("bram", "She also borrowed my toaster."),
    ]),
    ("s01e02", [
        ("ada", "Today we measure the speed of gossip."),
        ("bram", "Faster than light, I think."),
        ("ada", "Only on Tuesdays."),
        ("cyrus", "Then we wait until Wednesday."),
    ]),
]
# Scene four is recorded as one file; its lines point into it with start/end.
LONG_SCENE = ("s01e03", [
    ("ada", "The robot learned to knock."),
    ("cyrus", "Then why is the door gone?"),
    ("ada", "It learned to knock down."),
])
# Lines with no scene context (more audio for stage two).
SOLO = [
    ("ada", "I never guess. I compute."),
    ("ada", "Please stand behind the yellow line."),
    ("ada", "Hypotheses are free. Lab coats are not."),
    ("bram", "I only wanted a sandwich."),
    ("bram", "Nobody tells me anything around here."),
    ("cyrus", "Back in Glasgow we had proper thunder."),
    ("cyrus", "Never trust a quiet centrifuge."),
]


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def speak(speaker, text, path):
    run(VOICES[speaker](text, path))


def duration(path):
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def main():
    os.makedirs(os.path.join(OUT, "wavs"), exist_ok=True)
    lines = []

    for n, (episode, turns) in enumerate(SCENES, start=1):
        context = []
        for k, (speaker, text) in enumerate(turns, start=1):
            utt_id = f"tinylab-{episode}-sc{n:02d}-{k:02d}"
            rel = f"wavs/{utt_id}.wav"
            speak(speaker, text, os.path.join(OUT, rel))
            lines.append(dict(id=utt_id, audio=rel, text=text, speaker=speaker, series=SERIES,
                              episode=episode, language="en", context=list(context)))
            context.append(dict(speaker=speaker, text=text, audio=rel))

    # The long scene: each turn at 16 kHz mono, 0.3 s of silence between, one file.
    episode, turns = LONG_SCENE
    scene_rel = "scene-04.wav"
    with tempfile.TemporaryDirectory() as tmp:
        parts, t = [], 0.0
        spans = []
        for k, (speaker, text) in enumerate(turns):
            raw = os.path.join(tmp, f"raw{k}.wav")
            fixed = os.path.join(tmp, f"part{k}.wav")
            speak(speaker, text, raw)
            run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", fixed, "pad", "0", "0.3"])
            d = duration(fixed)
            spans.append((t, t + d - 0.3))
            parts.append(fixed)
            t += d
        run(["sox", *parts, os.path.join(OUT, scene_rel)])
    context = []
    for k, ((speaker, text), (start, end)) in enumerate(zip(turns, spans), start=1):
        utt_id = f"tinylab-{episode}-sc04-{k:02d}"
        lines.append(dict(id=utt_id, audio=scene_rel, start=round(start, 3), end=round(end, 3), text=text,
                          speaker=speaker, series=SERIES, episode=episode, language="en",
                          context=list(context)))
        context.append(dict(speaker=speaker, text=text, audio=scene_rel, start=round(start, 3),
                            end=round(end, 3)))

    for k, (speaker, text) in enumerate(SOLO, start=1):
        utt_id = f"tinylab-solo-{speaker}-{k:02d}"
        rel = f"wavs/{utt_id}.wav"
        speak(speaker, text, os.path.join(OUT, rel))
        lines.append(dict(id=utt_id, audio=rel, text=text, speaker=speaker, series=SERIES,
                          episode="extras", language="en", context=[]))

    with open(os.path.join(OUT, "manifest.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    # 44.1 kHz stereo 24-bit: a flite clip upsampled by sox, right channel quieter and delayed.
    fixtures = os.path.join(ROOT, "tests", "fixtures", "audio")
    os.makedirs(fixtures, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw, up = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "up.wav")
        speak("cyrus", "Stereo check.", raw)
        run(["sox", raw, "-r", "44100", "-b", "32", "-e", "floating-point", up, "trim", "0", "1.0"])
        mono = _read_float_wav(up)
    left = mono
    right = 0.8 * np.concatenate([np.zeros(7, dtype=np.float32), mono[:-7]])
    stereo = np.stack([left, right], axis=1)
    ints = np.clip(np.round(stereo * (2**23 - 1)), -2**23, 2**23 - 1).astype("<i4")
    raw24 = ints.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    with wave.open(os.path.join(fixtures, "stereo-44k1-24bit.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(44100)
        w.writeframes(raw24)

    total = sum(duration(os.path.join(OUT, l["audio"])) for l in lines if "start" not in l)
    print(f"{len(lines)} manifest lines, {total:.1f} s in single-clip files", file=sys.stderr)


def _read_float_wav(path):
    """Samples of a mono 32-bit float WAV (Python's wave module reads integer PCM only)."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = 12
    while pos < len(blob):
        cid, size = blob[pos:pos + 4], int.from_bytes(blob[pos + 4:pos + 8], "little")
        if cid == b"data":
            return np.frombuffer(blob[pos + 8:pos + 8 + size], dtype="<f4")
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


if __name__ == "__main__":
    main()
