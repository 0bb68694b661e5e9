#!/usr/bin/env python3
"""Synthesize two short "episodes" of The Tiny Lab for `arp-train build-data`: the corpus's three
voices (and one voice nobody enrolls) speaking new lines in scenes, with pauses, a few
overlapping turns, and subtitles, the way a TV episode comes.

Needs the Debian packages espeak-ng, flite, sox and ffmpeg. Run from the repository root:

    python3 tools/data/make_episodes.py

Writes data/tiny-lab-episodes/ (committed, ~1 MB):

  s02e01.m4a + s02e01.srt   AAC in MP4; the SRT names some speakers with `NAME:` prefixes
  s02e02.ogg + s02e02.ass   Ogg Vorbis; the ASS script carries a Name on some lines
  enroll.yaml               a few seconds per character: the corpus's solo clips
  truth.jsonl               who really speaks each subtitle line (for tests only)
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_corpus import VOICES  # noqa: E402  (the corpus's own voices)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "data", "tiny-lab-episodes")
RATE = 16000

# A voice no one enrolls: build-data must call its lines `other`.
VOICES = dict(VOICES, dora=lambda text, path: ["espeak-ng", "-v", "en-gb+f4", "-p", "70", "-s", "165", "-w", path, text])

EPISODES = {
    "s02e01": [
        [("ada", "Good morning. The coffee machine has achieved sentience."),
         ("bram", "Does it still make coffee?"),
         ("ada", "Only when it feels appreciated."),
         ("cyrus", "Then we are all doomed, lads."),
         ("ada", "Say something nice to it, Bram."),
         ("bram", "You are a very handsome machine.")],
        [("cyrus", "Someone has labelled every drawer in the lab."),
         ("ada", "Labels are the first step of science."),
         ("dora", "Delivery for doctor Ada, please sign here."),
         ("ada", "I will sign with my left hand, for the experiment."),
         ("bram", "She signs everything with her left hand."),
         ("cyrus", "Aye, and she is right handed.")],
        [("bram", "The hamster escaped again."),
         ("ada", "He did not escape. He is exploring."),
         ("cyrus", "He is exploring my lunch box."),
         ("ada", "Then he has excellent taste."),
         ("bram", "I am buying a new lunch box tomorrow.")],
    ],
    "s02e02": [
        [("ada", "Today we test whether toast lands butter side down."),
         ("cyrus", "I have tested that every morning for forty years."),
         ("bram", "We need at least a hundred slices."),
         ("ada", "Science is hungry work."),
         ("dora", "The bakery called. They want to know what is going on."),
         ("ada", "Tell them it is for peer review.")],
        [("cyrus", "The fire alarm is beeping in a minor key."),
         ("bram", "Is that worse than a major key?"),
         ("ada", "Much worse. It means the battery is sad."),
         ("cyrus", "I will cheer it up with a new one."),
         ("ada", "Write down how long the cheering takes.")],
        [("bram", "Ada, why is there a telescope in the fridge?"),
         ("ada", "It is looking for cold stars."),
         ("cyrus", "There are only yoghurts in there."),
         ("ada", "Then the yoghurts are the stars of this study."),
         ("dora", "I am not even going to ask."),
         ("bram", "Nobody ever asks. That is the problem.")],
    ],
}
# Names the subtitles carry: on these line numbers (per episode, 1-based) the SRT puts
# `NAME:` before the text, or the ASS fills its Name field.
NAMED = {"s02e01": {1, 2, 4, 9, 12}, "s02e02": {1, 3, 7, 10, 14}}
ENROLL = {
    "ada": ["tinylab-solo-ada-01", "tinylab-solo-ada-02", "tinylab-solo-ada-03"],
    "bram": ["tinylab-solo-bram-04", "tinylab-solo-bram-05"],
    "cyrus": ["tinylab-solo-cyrus-06", "tinylab-solo-cyrus-07"],
}


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def speech(speaker, text, tmp):
    raw, fixed = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "fixed.wav")
    run(VOICES[speaker](text, raw))
    run(["sox", raw, "-r", str(RATE), "-c", "1", "-b", "16", fixed])
    with wave.open(fixed) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def stamp(seconds, comma):
    ms = int(round(seconds * 1000))
    h, m, s, ms = ms // 3600000, ms // 60000 % 60, ms // 1000 % 60, ms % 1000
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def ass_stamp(seconds):
    cs = int(round(seconds * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def main():
    rng = random.Random(7)
    os.makedirs(OUT, exist_ok=True)
    truth = []
    for episode, scenes in EPISODES.items():
        track = np.zeros(0, dtype=np.float32)
        cues = []
        t = 1.0
        number = 0
        with tempfile.TemporaryDirectory() as tmp:
            for scene in scenes:
                for k, (speaker, text) in enumerate(scene):
                    audio = speech(speaker, text, tmp)
                    number += 1
                    # Most turns follow a short pause; every fourth cuts in 0.25 s early.
                    if k > 0 and number % 4 == 0:
                        t -= 0.25
                    start = t
                    end = start + len(audio) / RATE
                    first = int(round(start * RATE))
                    if len(track) < first + len(audio):
                        track = np.concatenate([track, np.zeros(first + len(audio) - len(track), np.float32)])
                    track[first:first + len(audio)] += audio
                    cues.append((number, start, end, speaker, text))
                    truth.append(dict(episode=episode, line=number, speaker=speaker, text=text,
                                      start=round(start, 3), end=round(end, 3)))
                    t = end + rng.uniform(0.35, 0.7)
                t += 4.0  # between scenes
            track = np.concatenate([track, np.zeros(RATE, np.float32)])
            # A faint room tone, so silence is not digital zero.
            track += np.random.default_rng(3).normal(0, 0.002, len(track)).astype(np.float32)
            mixed = os.path.join(tmp, "mixed.wav")
            with wave.open(mixed, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes((np.clip(track, -1, 1) * 32767).astype("<i2").tobytes())
            if episode == "s02e01":
                run(["ffmpeg", "-v", "error", "-y", "-i", mixed, "-c:a", "aac", "-b:a", "64k", "-ar", "22050",
                     "-ac", "2", "-map_metadata", "-1", os.path.join(OUT, f"{episode}.m4a")])
            else:
                run(["ffmpeg", "-v", "error", "-y", "-i", mixed, "-c:a", "libvorbis", "-q:a", "3",
                     "-map_metadata", "-1", os.path.join(OUT, f"{episode}.ogg")])
        named = NAMED[episode]
        if episode == "s02e01":
            with open(os.path.join(OUT, f"{episode}.srt"), "w") as f:
                for number, start, end, speaker, text in cues:
                    shown = f"{speaker.upper()}: {text}" if number in named else text
                    # Subtitles wrap long lines over two rows.
                    words = shown.split()
                    if len(words) > 6:
                        shown = " ".join(words[:len(words) // 2]) + "\n" + " ".join(words[len(words) // 2:])
                    f.write(f"{number}\n{stamp(start, True)} --> {stamp(end, True)}\n{shown}\n\n")
        else:
            with open(os.path.join(OUT, f"{episode}.ass"), "w") as f:
                f.write("[Script Info]\nTitle: The Tiny Lab s02e02\nScriptType: v4.00+\n\n"
                        "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, Bold, Italic\n"
                        "Style: Default,Arial,20,&H00FFFFFF,0,0\n\n[Events]\n"
                        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")
                for number, start, end, speaker, text in cues:
                    name = speaker.capitalize() if number in named else ""
                    shown = text.replace(", ", ",\\N", 1) if number % 3 == 0 else text
                    if number % 5 == 0:
                        shown = "{\\i1}" + shown + "{\\i0}"
                    f.write(f"Dialogue: 0,{ass_stamp(start)},{ass_stamp(end)},Default,{name},0,0,0,,{shown}\n")
    with open(os.path.join(OUT, "truth.jsonl"), "w") as f:
        for row in truth:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(OUT, "enroll.yaml"), "w") as f:
        f.write("# A few seconds of each character's voice (the corpus's solo clips): build-data\n"
                "# assigns every subtitle line to the nearest of these voices, or to `other`.\n"
                "characters:\n")
        for character, clips in ENROLL.items():
            f.write(f"  {character}:\n")
            for clip in clips:
                f.write(f"    - ../tiny-lab/wavs/{clip}.wav\n")
    print(f"{len(truth)} lines in {len(EPISODES)} episodes", file=sys.stderr)


if __name__ == "__main__":
    main()
