#!/usr/bin/env python3
"""Distinct training-batch shapes with and without arp-train's shape buckets (src/data/buckets.rs),
for a synthetic corpus of 5000 utterances of 0.5-15 s (flow: batches packed to 2000 mel frames as
decoder.flow.max_frames_per_batch does; stage one: batch 1, 100-2048 tokens). Each distinct shape is
one set of kernels to autotune and compile on a GPU backend. Run: python3 benches/shape_buckets.py"""
import random


def bucket(n, granule=16):
    """Mirror of buckets::bucket: granule x {1, 2, 3, 4, 6, 8, 12, ...}."""
    units, size = max(1, -(-n // granule)), 1
    while True:
        if size >= units:
            return size * granule
        if size >= 2 and size // 2 * 3 >= units:
            return size // 2 * 3 * granule
        size *= 2


def main():
    rng = random.Random(1)
    seconds = [rng.uniform(0.5, 15) for _ in range(5000)]
    frames = [int(s * 22050 / 256) for s in seconds]
    tokens = [int(s * 12.5) + 1 for s in seconds]
    batches, current = [], []
    for i in sorted(range(len(seconds)), key=lambda i: frames[i]):
        longest = max([frames[j] for j in current] + [frames[i]])
        if current and (len(current) + 1) * longest > 2000:
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    rng.shuffle(batches)

    def flow_shapes(chosen, on):
        return len({(len(b),
                     bucket(max(frames[i] for i in b)) if on else max(frames[i] for i in b),
                     bucket(max(tokens[i] for i in b)) if on else max(tokens[i] for i in b))
                    for b in chosen})

    lengths = [int(rng.uniform(100, 2048)) for _ in range(5000)]
    print("| part | steps | distinct shapes, no buckets | with buckets |")
    print("|---|---|---|---|")
    for steps in (20, len(batches)):
        print(f"| flow | {steps} | {flow_shapes(batches[:steps], False)} | {flow_shapes(batches[:steps], True)} |")
    for steps in (20, len(lengths)):
        print(f"| lm (batch 1) | {steps} | {len(set(lengths[:steps]))} | "
              f"{len({min(bucket(n), 2048) for n in lengths[:steps]})} |")


if __name__ == "__main__":
    main()
