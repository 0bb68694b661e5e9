#!/usr/bin/env python3
"""Build real-voice development material for `arp-train build-data` from the voice acting of the
game Fish Fillets NG (Debian packages, GPL-2; nothing of it is committed).

Synthetic voices are too easy for speaker assignment; real acted speech has range. This script
turns the game's spoken dialogue into TV-like episodes with subtitles:

- every level's clips, in script order, make a scene (pauses of 0.25-1.0 s between turns, 4-6 s
  between scenes); several scenes make an episode of about eight minutes of speech;
- extras nobody enrolls speak between the characters' turns: other voices of the game (Czech
  pack), or for Dutch, which has only the two fish, real voices from codec2-examples (Debian,
  LGPL-2.1) and pyannote-audio's sample conversation (PyPI, MIT);
- a music bed from the game under the speech (18-26 dB below it), the subtitles' times off by
  up to 0.15 s as real subtitles are, and the episodes in FLAC, MP3, AAC (M4A), Ogg and WAV;
- the `test` set holds a quiet mix (speech at -49 dBFS RMS) and a loud one (peaks at 0 dBFS).

Levels are split three ways with a fixed seed: a few give the enrollment clips (three per
character, 2-6 s, never in an episode), the rest alternate between the `tune` episodes (look at
these while choosing how build-data assigns lines) and the `test` episodes (report these, tune
nothing on them). The Czech pack (other actors, another language, the game's other characters as
extras) is a second test.

Needs apt-get (or --debs DIR holding the .deb files), pip, ffmpeg and numpy. Run from the
repository root:

    python3 tools/data/fillets_dev.py                  # Dutch -> data/fillets-dev/nl/
    python3 tools/data/fillets_dev.py --language cs    # Czech -> data/fillets-dev/cs/

Writes under data/fillets-dev/<language>/ (git-ignored, about 150 MB):

  tune/<episode>.<ext> + .srt   episodes and subtitles (no speaker names in them)
  test/<episode>.<ext> + .srt
  enroll.yaml                   three clips per character (both fish)
  enroll-small.yaml             the small fish only: the big fish is one more unenrolled voice
  enroll/<id>.wav               the enrollment clips
  truth.jsonl                   who speaks each subtitle line: {"set", "episode", "line", "speaker"}
  README.md                     what was built, from which packages

Then `benches/build_data_real.sh` runs build-data on it and prints recall and precision per
character.
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import wave
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = 22050
SEED = 33
GAME = "usr/share/games/fillets-ng"
PACKAGES = {
    "data": "fillets-ng-data=1.0.1-1.1",
    "nl": "fillets-ng-data-nl=1.0.1-1.1",
    "cs": "fillets-ng-data-cs=1.0.1-1.1",
    "codec2": "codec2-examples=1.0.5-1",
}
PYANNOTE = "pyannote-audio==4.0.7"
CHARACTERS = {"font_small": "small", "font_big": "big"}
EPISODE_SPEECH_SECONDS = 480
ENROLL_CLIPS = 3
FORMATS = ["flac", "mp3", "m4a", "ogg", "wav"]
# Codec2 clips that are one voice each (the others mix voices or hold test tones).
CODEC2_VOICES = ["david4", "ve9qrp", "vk2tpm_004", "vk5qi", "hts1a", "hts2a", "mmt1", "kristoff", "cross"]
EXTRA_TEXTS = [
    "Excuseer, is dit de weg naar het station?", "Dat heb ik niet gezegd.", "Kom je morgen ook?",
    "Het regent alweer.", "Ik bel je straks terug.", "Waar is de sleutel gebleven?",
    "Dat is niet mijn probleem.", "Goedemorgen allemaal.", "Wie heeft dat gedaan?",
    "We moeten nu gaan.", "Ik weet het niet zeker.", "Zet de radio maar wat harder.",
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def fetch_debs(work, debs, names):
    """Extracts the Debian packages `names` into work/root; from --debs or apt-get download."""
    root = os.path.join(work, "root")
    os.makedirs(root, exist_ok=True)
    for name in names:
        spec = PACKAGES[name]
        package = spec.split("=")[0]
        marker = os.path.join(work, f".{package}.extracted")
        if os.path.exists(marker):
            continue
        source = debs or work
        found = glob.glob(os.path.join(source, f"{package}_*.deb"))
        if not found:
            print(f"apt-get download {spec}", file=sys.stderr)
            run(["apt-get", "download", spec], cwd=work, stdout=subprocess.DEVNULL)
            found = glob.glob(os.path.join(work, f"{package}_*.deb"))
        run(["dpkg-deb", "-x", found[0], root])
        open(marker, "w").close()
    return root


def fetch_pyannote_sample(work):
    out = os.path.join(work, "pyannote")
    if not os.path.exists(os.path.join(out, "sample.rttm")):
        os.makedirs(out, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="pyannote-")
        print(f"pip download --no-deps {PYANNOTE}", file=sys.stderr)
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, PYANNOTE])
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            for member in ("sample.wav", "sample.rttm"):
                with open(os.path.join(out, member), "wb") as f:
                    f.write(z.read(f"pyannote/audio/sample/{member}"))
        shutil.rmtree(tmp)
    return out


def decode(path, start=None, end=None):
    cmd = ["ffmpeg", "-v", "error", "-nostdin"]
    if start is not None:
        cmd += ["-ss", f"{start:.3f}", "-to", f"{end:.3f}"]
    cmd += ["-i", path, "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"]
    return np.frombuffer(run(cmd, stdout=subprocess.PIPE).stdout, dtype=np.float32).copy()


def lua_strings(text):
    """dialogId(id, font, english) and the dialogStr that follows, in file order."""
    pattern = re.compile(
        r'dialogId\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"?([^",)]*)"?\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)\s*'
        r'dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\)', re.S)
    for m in pattern.finditer(text):
        local = m.group(4).replace('\\"', '"').replace("\\n", " ").replace("\\\\", "\\")
        yield m.group(1), m.group(2), " ".join(local.split())


def scenes(root, language):
    """Levels in name order: [(level, [(clip id, speaker, text, path)])]; speaker is the font's
    character, or `extra:<font>` for the game's other voices."""
    game = os.path.join(root, GAME)
    levels = []
    for script in sorted(glob.glob(os.path.join(game, "script", "*", f"dialogs_{language}.lua")) +
                         glob.glob(os.path.join(game, "script", "share", f"*_dialogs_{language}.lua"))):
        level = os.path.basename(os.path.dirname(script))
        sound = os.path.join(game, "sound", level, language)
        if level == "share":
            prefix = os.path.basename(script)[: -len(f"_dialogs_{language}.lua")]
            level = f"share-{prefix}"
            sound = [d for d in glob.glob(os.path.join(game, "sound", "share", "*", language))
                     if os.path.basename(os.path.dirname(d)).startswith(prefix)]
            sound = sound[0] if sound else ""
        with open(script, encoding="utf-8", errors="replace") as f:
            text = f.read()
        clips = []
        for clip_id, font, local in lua_strings(text):
            path = os.path.join(sound, f"{clip_id}.ogg")
            if not os.path.isfile(path) or not local.strip():
                continue
            speaker = CHARACTERS.get(font, f"extra:{font or 'unnamed'}")
            clips.append((clip_id, speaker, local, path))
        if clips:
            levels.append((level, clips))
    return levels


def outside_voices(work, root):
    """Pieces (1.5-4 s) of real voices that are not in the game: [(voice, samples)]."""
    pieces = []
    codec2 = os.path.join(root, "usr/share/codec2/wav")
    for name in CODEC2_VOICES:
        path = os.path.join(codec2, f"{name}.wav")
        if not os.path.isfile(path):
            continue
        pieces += [(f"codec2:{name}", p) for p in cut(decode(path))]
    sample = fetch_pyannote_sample(work)
    with open(os.path.join(sample, "sample.rttm")) as f:
        for row in f:
            fields = row.split()
            start, duration, speaker = float(fields[3]), float(fields[4]), fields[7]
            if duration >= 1.2:
                audio = decode(os.path.join(sample, "sample.wav"), start, start + duration)
                pieces += [(f"pyannote:{speaker}", p) for p in cut(audio)]
    return pieces


def cut(audio, shortest=1.5, longest=4.0):
    """Consecutive pieces of 1.5-4 s, split at the quietest 20 ms near each target length."""
    frame = RATE // 50
    pieces, at = [], 0
    rng = random.Random(len(audio))
    while len(audio) - at >= shortest * RATE:
        target = at + int(rng.uniform(2.0, longest) * RATE)
        if target >= len(audio) - shortest * RATE:
            pieces.append(audio[at:])
            break
        window = audio[target - RATE // 2: target + RATE // 2]
        energy = [float(np.sum(window[i:i + frame] ** 2)) for i in range(0, len(window) - frame, frame)]
        split = target - RATE // 2 + frame * int(np.argmin(energy))
        pieces.append(audio[at:split])
        at = split
    return [p for p in pieces if len(p) >= shortest * RATE and rms_db(p) > -50]


def rms_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20)


def music_beds(root):
    tracks = sorted(glob.glob(os.path.join(root, GAME, "music", "*.ogg")))
    return [t for t in tracks if "menu" not in t]


def write_wav(path, audio):
    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def encode(wav, path):
    ext = os.path.splitext(path)[1][1:]
    codec = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
             "m4a": ["-c:a", "aac", "-b:a", "128k"], "ogg": ["-c:a", "libvorbis", "-q:a", "5"],
             "wav": ["-c:a", "pcm_s16le"]}[ext]
    run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", wav] + codec + [path])


def srt_time(t):
    ms = int(round(max(t, 0) * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def build_episode(name, levels, extras, music, rng, level_db, out_dir, fmt):
    """Lays `levels` out on one timeline; returns the truth rows."""
    turns = []  # (start, samples, speaker, text)
    t = 1.0
    for _level, clips in levels:
        for clip_id, speaker, text, path in clips:
            if extras and rng.random() < 0.15:
                voice, audio = extras[rng.randrange(len(extras))]
                turns.append((t, audio, f"extra:{voice}", rng.choice(EXTRA_TEXTS)))
                t += len(audio) / RATE + rng.uniform(0.25, 1.0)
            audio = decode(path)
            if len(audio) < RATE // 5:
                continue  # a few clips of the packs hold no audio
            turns.append((t, audio, speaker, text))
            t += len(audio) / RATE + rng.uniform(0.25, 1.0)
        t += rng.uniform(4.0, 6.0)
    total = int((t + 1.0) * RATE)
    speech = np.zeros(total, dtype=np.float64)
    for start, audio, _, _ in turns:
        at = int(start * RATE)
        # Every voice at a broadcast-like level, within +-3 dB of it.
        gain = 10 ** ((-23 + rng.uniform(-3, 3) - rms_db(audio)) / 20)
        speech[at:at + len(audio)] += audio * gain
    bed = decode(music)
    bed = np.tile(bed, total // len(bed) + 1)[:total]
    bed *= 10 ** ((-23 - rng.uniform(18, 26) - rms_db(bed)) / 20)
    mix = speech + bed
    if level_db == "peak0":
        mix /= np.max(np.abs(mix))
    else:
        speech_rms = rms_db(np.concatenate([speech[int(s * RATE):int(s * RATE) + len(a)] for s, a, _, _ in turns]))
        mix *= 10 ** ((level_db - speech_rms) / 20)
    wav = os.path.join(out_dir, f"{name}.tmp.wav")
    write_wav(wav, mix)
    encode(wav, os.path.join(out_dir, f"{name}.{fmt}"))
    os.remove(wav)
    rows, srt = [], []
    for number, (start, audio, speaker, text) in enumerate(turns, 1):
        end = start + len(audio) / RATE
        cue_start = start + rng.uniform(-0.15, 0.1)
        cue_end = end + rng.uniform(-0.1, 0.15)
        srt.append(f"{number}\n{srt_time(cue_start)} --> {srt_time(cue_end)}\n{text}\n")
        rows.append({"episode": name, "line": number, "speaker": speaker,
                     "start": round(cue_start, 3), "end": round(cue_end, 3)})
    with open(os.path.join(out_dir, f"{name}.srt"), "w", encoding="utf-8") as f:
        f.write("\n".join(srt))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--language", choices=["nl", "cs"], default="nl")
    parser.add_argument("--out", help="default: data/fillets-dev/<language>")
    parser.add_argument("--work", default=os.path.join(ROOT, "data", "fillets-dev", "downloads"),
                        help="where the packages are downloaded and extracted")
    parser.add_argument("--debs", help="a directory already holding the .deb files")
    args = parser.parse_args()
    out = args.out or os.path.join(ROOT, "data", "fillets-dev", args.language)
    os.makedirs(args.work, exist_ok=True)
    root = fetch_debs(args.work, args.debs, ["data", args.language, "codec2"])

    rng = random.Random(f"{SEED}-{args.language}")
    levels = scenes(root, args.language)
    rng.shuffle(levels)
    # Enrollment: three clips of 2-6 s per character, from levels kept out of every episode.
    enroll_levels, chosen = [], {c: [] for c in CHARACTERS.values()}
    while any(len(v) < ENROLL_CLIPS for v in chosen.values()):
        level, clips = levels.pop()
        enroll_levels.append(level)
        for clip_id, speaker, _text, path in clips:
            if speaker in chosen and len(chosen[speaker]) < ENROLL_CLIPS:
                seconds = len(decode(path)) / RATE
                if 2.0 <= seconds <= 6.0:
                    chosen[speaker].append((clip_id, path))
    extras = outside_voices(args.work, root) if args.language == "nl" else []
    rng.shuffle(extras)

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "enroll"))
    for speaker, clips in chosen.items():
        for clip_id, path in clips:
            write_wav(os.path.join(out, "enroll", f"{clip_id}.wav"), decode(path))
    entries = {s: [f"enroll/{c}.wav" for c, _ in clips] for s, clips in chosen.items()}
    series = f"Fish Fillets NG ({args.language})"
    for name, characters in (("enroll.yaml", ["small", "big"]), ("enroll-small.yaml", ["small"])):
        with open(os.path.join(out, name), "w") as f:
            f.write(f"series: {series}\ncharacters:\n")
            for c in characters:
                f.write(f"  {c}: [{', '.join(entries[c])}]\n")

    # Episodes of about eight minutes of speech, alternating between the tune and test sets.
    episodes, current, seconds = [], [], 0.0
    for level, clips in levels:
        current.append((level, clips))
        seconds += sum(os.path.getsize(p) for *_, p in clips) / 6000.0  # Vorbis at ~48 kbit/s
        if seconds >= EPISODE_SPEECH_SECONDS:
            episodes.append(current)
            current, seconds = [], 0.0
    if current:
        episodes.append(current)
    musics = music_beds(root)
    truth = []
    counts = {"tune": 0, "test": 0}
    for index, levels_of_episode in enumerate(episodes):
        part = "tune" if index % 2 == 0 else "test"
        counts[part] += 1
        name = f"{part}-e{counts[part]:02d}"
        level_db = -23.0
        if part == "test" and counts[part] == 1:
            level_db = -49.0
        elif part == "test" and counts[part] == 2:
            level_db = "peak0"
        os.makedirs(os.path.join(out, part), exist_ok=True)
        fmt = FORMATS[index % len(FORMATS)]
        own_extras = extras[index::len(episodes)]
        rows = build_episode(name, levels_of_episode, own_extras, musics[index % len(musics)], rng,
                             level_db, os.path.join(out, part), fmt)
        for r in rows:
            r["set"] = part
        truth += rows
        print(f"{part}/{name}.{fmt}: {len(rows)} lines, scenes {', '.join(l for l, _ in levels_of_episode)}",
              file=sys.stderr)
    with open(os.path.join(out, "truth.jsonl"), "w") as f:
        for row in truth:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"# Real-voice development material ({args.language})\n\n"
                f"Built by tools/data/fillets_dev.py from {', '.join(PACKAGES[p] for p in ['data', args.language, 'codec2'])}"
                f"{' and ' + PYANNOTE if args.language == 'nl' else ''}. GPL-2 (the game's voices and music): do not "
                f"commit.\n\nEnrollment levels: {', '.join(enroll_levels)}.\n")
    by_speaker = {}
    for row in truth:
        key = (row["set"], row["speaker"] if not row["speaker"].startswith("extra") else "extras")
        by_speaker[key] = by_speaker.get(key, 0) + 1
    for (part, speaker), n in sorted(by_speaker.items()):
        print(f"  {part:<5} {speaker:<8} {n:>5} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
