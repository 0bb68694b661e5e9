#!/usr/bin/env python3
"""Rewrites cubecl's on-disk autotune cache so that every matmul key whose candidates include
one whose name contains PATTERN runs that candidate (first match), e.g. `double` for cubek's
double-buffered kernels. Used to reproduce kernel bugs that autotune hides or shows by
timing (benches/perf-notes.md, "double-buffered matmul"). Standard library only.

usage: python3 tools/bench/autotune_force.py PATTERN [CACHE_DIR]   (default: target/autotune)
"""
import glob
import json
import os
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pattern = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "target/autotune"
    files = glob.glob(os.path.join(root, "*", "*", "*matmul*.json.log"))
    if not files:
        sys.exit(f"no matmul autotune cache under {root}: run the kernels once first")
    forced = 0
    for path in files:
        lines = []
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                entry = json.loads(line)
                value = entry["value"]
                ok = [r["outcome"]["Ok"] for r in value["results"] if "Ok" in r["outcome"]]
                match = [o for o in ok if pattern in o["name"]]
                if match and value["fastest_index"] != match[0]["index"]:
                    value["fastest_index"] = match[0]["index"]
                    forced += 1
                lines.append(json.dumps(entry) + "\n")
        with open(path, "w") as f:
            f.writelines(lines)
    print(f"{forced} autotune entries now run a kernel matching {pattern!r}")


if __name__ == "__main__":
    main()
