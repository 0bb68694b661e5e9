#!/usr/bin/env bash
# Peak memory of reading one 3 s line at 7000 s of a two-hour episode, per format, against the
# same command on a one-second file (issue 21). Needs ffmpeg (to make the episodes, about 10 min
# on 2 cores) and GNU time. Usage: benches/long_episode_memory.sh [arp-train binary]
set -euo pipefail
bin=${1:-target/debug/arp-train}
work=${WORK:-/tmp/arp-long-episode}
mkdir -p "$work"
if [ ! -f "$work/episode.flac" ]; then
  ffmpeg -v error -y -f lavfi -i "sine=frequency=220:sample_rate=48000:duration=7200" -ac 2 -c:a aac -b:a 96k "$work/episode.m4a"
  ffmpeg -v error -y -i "$work/episode.m4a" -c:a libmp3lame -b:a 96k "$work/episode.mp3"
  ffmpeg -v error -y -i "$work/episode.m4a" -c:a flac "$work/episode.flac"
fi
line() { printf '{"id": "line", "audio": "%s", "start": %s, "end": %s, "text": "I never guess.", "speaker": "ada"}\n' "$1" "$2" "$3"; }
line "$PWD/tests/fixtures/audio/formats/aac-stereo.m4a" 0.1 0.9 > "$work/short.jsonl"
for f in m4a mp3 flac; do line "$work/episode.$f" 7000.0 7003.0 > "$work/$f.jsonl"; done
for m in short m4a mp3 flac; do
  rm -rf "$work/out" "$work/cache"
  /usr/bin/time -f "%M KiB peak, %e s" "$bin" prepare --recipe recipes/tiny.yaml \
    --set "data.manifests=[$work/$m.jsonl]" --set "output_dir=$work/out" --set "data.cache_dir=$work/cache" \
    > "$work/$m.log" 2>&1 || { cat "$work/$m.log"; exit 1; }
  echo "$m ($(du -h "$work/episode.$m" 2>/dev/null | cut -f1 || echo 1 s)): $(tail -1 "$work/$m.log")"
done
