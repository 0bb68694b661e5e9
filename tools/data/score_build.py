#!/usr/bin/env python3
"""Recall and precision per character of a build-data manifest against a truth file (the real-
voice benchmark, benches/build_data_real.sh). Independent of arp-train's own `--truth` report,
so that builds of any version are scored the same way. Standard library only.

    python3 tools/data/score_build.py OUT/manifest.jsonl TRUTH.jsonl --characters small,big [--set test]

Recall: lines of the character given to it, over all its subtitle lines in the scored episodes
(rejected lines count as missed). Precision: lines given to it that are its own. Lines of voices
not in --characters are unenrolled: how many of them went to a character is printed too.
"""
import argparse
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("truth")
    parser.add_argument("--characters", required=True, help="the enrolled characters, comma-separated")
    parser.add_argument("--set", help="score only truth rows of this set (tune or test)")
    parser.add_argument("--json", help="also write the scores here")
    args = parser.parse_args()
    characters = [c.strip().lower() for c in args.characters.split(",")]
    truth = {}
    with open(args.truth, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            if args.set and row.get("set") != args.set:
                continue
            speaker = row["speaker"].lower()
            truth[f"{row['episode']}-{row['line']:04d}"] = speaker if speaker in characters else "other"
    given = {}
    with open(args.manifest, encoding="utf-8") as f:
        for row in map(json.loads, filter(str.strip, f)):
            given[row["id"]] = row["speaker"].lower()
    scores = {}
    for c in characters:
        lines = sum(1 for s in truth.values() if s == c)
        assigned = sum(1 for i, s in given.items() if s == c and i in truth)
        right = sum(1 for i, s in given.items() if s == c and truth.get(i) == c)
        scores[c] = {"lines": lines, "assigned": assigned, "right": right,
                     "recall": right / max(lines, 1), "precision": right / max(assigned, 1)}
        print(f"  {c:<8} recall {100 * scores[c]['recall']:5.1f}% ({right} of {lines})  "
              f"precision {100 * scores[c]['precision']:5.1f}% ({right} of {assigned})")
    unenrolled = [i for i, s in truth.items() if s == "other"]
    leaked = sum(1 for i in unenrolled if i in given)
    print(f"  unenrolled voices: {len(unenrolled)} lines, {leaked} given to a character")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"characters": scores, "unenrolled": len(unenrolled), "unenrolled_assigned": leaked}, f, indent=1)


if __name__ == "__main__":
    main()
