#!/usr/bin/env bash
# build-data on real human voices (issue 33): recall and precision per character on the Fish
# Fillets NG voice-acting material that tools/data/fillets_dev.py builds (not committed: GPL-2
# game audio), for both enrollments: the two fish, and the small fish alone (the big fish is
# then one more unenrolled voice). Scored by tools/data/score_build.py from the manifest, so any
# build of arp-train is scored the same way.
#
#   benches/build_data_real.sh                    # Dutch, the test episodes, target/release/arp-train
#   benches/build_data_real.sh nl tune            # the episodes the assignment was chosen on
#   benches/build_data_real.sh cs test -- --speaker-encoder resemblyzer
#   BIN=/path/to/other/arp-train benches/build_data_real.sh nl test
#
# Outputs go to target/bench/build-data/<language>-<set>-<enrollment>/ (a rerun reads the
# embedding cache: only the assignment runs again).
set -euo pipefail
cd "$(dirname "$0")/.."
language="${1:-nl}"
set_name="${2:-test}"
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = "--" ] && shift
bin="${BIN:-target/release/arp-train}"
data="data/fillets-dev/$language"
if [ ! -f "$data/truth.jsonl" ]; then
    python3 tools/data/fillets_dev.py --language "$language"
fi
for enrollment in enroll:small,big enroll-small:small; do
    file="${enrollment%%:*}"
    characters="${enrollment#*:}"
    out="target/bench/build-data/$language-$set_name-$file${BENCH_TAG:+-$BENCH_TAG}"
    mkdir -p "$out"
    started=$(date +%s)
    "$bin" build-data --episodes "$data/$set_name" --enroll "$data/$file.yaml" --out "$out" "$@" \
        > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
    seconds=$(( $(date +%s) - started ))
    echo "$language $set_name, enrolled: $characters ($seconds s)"
    python3 tools/data/score_build.py "$out/manifest.jsonl" "$data/truth.jsonl" \
        --characters "$characters" --set "$set_name" --json "$out.scores.json"
done
