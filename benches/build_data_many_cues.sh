#!/usr/bin/env bash
# build-data on one episode whose subtitles hold N cues (the bundled s02e01 audio, cues of 0.4 s
# every 0.5 s over its first 25 s, repeated), run twice: the first run embeds every cue, the
# second reads the embeddings from the cache, so it times what follows embedding (assignment,
# scenes, manifest, report). Issue 34, item 11. Usage: benches/build_data_many_cues.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/arp-train}
WORK=${WORK:-target/bench/many-cues}
mkdir -p "$WORK"
sed "s#\.\./tiny-lab/#$PWD/data/tiny-lab/#" data/tiny-lab-episodes/enroll.yaml >"$WORK/enroll.yaml"
for n in "${@:-8000 16000 32000}"; do
    for count in $n; do
        dir="$WORK/e$count"
        mkdir -p "$dir"
        cp data/tiny-lab-episodes/s02e01.m4a "$dir/ep.m4a"
        python3 - "$count" "$dir/ep.srt" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
def ts(t):
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
with open(path, "w") as f:
    for i in range(n):
        start = (i % 50) * 0.5
        f.write(f"{i + 1}\n{ts(start)} --> {ts(start + 0.4)}\nline {i}\n\n")
PY
        rm -rf "$WORK/out$count"
        for pass in embed cached; do
            /usr/bin/time -f "$count cues, $pass: %e s, peak %M KB" \
                "$BIN" build-data --episodes "$dir" --enroll "$WORK/enroll.yaml" \
                --out "$WORK/out$count" >/dev/null 2>"$WORK/err"
            tail -1 "$WORK/err"
        done
        echo "  manifest: $(stat -c %s "$WORK/out$count/manifest.jsonl") bytes"
    done
done
