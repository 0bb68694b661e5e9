#!/usr/bin/env bash
# Autotune problem shapes after 20 steps of stage one and of the flow on wgpu, with shape
# buckets on and off, each run with a cold autotune and shader cache (issue 16; results in
# benches/perf-notes.md, "Shape buckets"). On lavapipe this takes about an hour.
#
# usage: benches/autotune_counts.sh [ARP_TRAIN_BINARY] [WORK_DIR]
# The work dir must not lie inside a cargo project (cubecl would keep its cache in that
# project's target/ instead of under XDG_CACHE_HOME). Prints one line per run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$repo/target/debug/arp-train}")"
work="${2:-$(mktemp -d /tmp/autotune-counts.XXXXXX)}"
recipe="$repo/recipes/tiny.yaml"
mkdir -p "$work" && cd "$work"
common=(--set "data.cache_dir=$work/cache"
    --set lm.steps=20 --set lm.checkpoint_every=20 --set lm.eval_every=1000
    --set decoder.flow.steps=20 --set decoder.flow.checkpoint_every=20 --set decoder.flow.eval_every=1000
    --set decoder.hift.steps=1 --set decoder.hift.checkpoint_every=1)
"$bin" prepare --recipe "$recipe" --set "data.cache_dir=$work/cache" > prepare.log 2>&1
# The finished vocoder every wgpu decoder run loads instead of training (its checkpoints do not
# depend on the flow's settings or on shape buckets).
"$bin" --recipe "$recipe" --output "$work/cpu" "${common[@]}" --stages decoder --device cpu > cpu.log 2>&1
for stage in lm decoder; do
    for buckets in on off; do
        out="$work/$stage-$buckets"
        rm -rf "$out"
        if [ "$stage" = decoder ]; then
            mkdir -p "$out/decoder" && cp -r "$work/cpu/decoder/hift" "$out/decoder/"
        fi
        start=$(date +%s)
        XDG_CACHE_HOME="$work/cache-$stage-$buckets" "$bin" --recipe "$recipe" --output "$out" \
            "${common[@]}" --set "shape_buckets=$buckets" --stages "$stage" --device wgpu > "$out.log" 2>&1
        shapes=$(grep -m1 -o "GPU kernels: [0-9]* new problem shapes" "$out.log" || echo "no autotune line")
        loss=$(grep -m1 -E "^stage one \(lm\)|^  flow \(" "$out.log" || true)
        echo "$stage buckets=$buckets: $shapes; $(( $(date +%s) - start )) s; $loss"
    done
done
