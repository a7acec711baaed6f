#!/usr/bin/env python3
"""Helpers of the deterministic-figure scripts (bench-*-instructions.sh). Standard library only.

    counts.py all-good GWBENCH_JSON N     exit 0 when the run got exactly N responses, all 2xx, else 1

As a module (PYTHONPATH=scripts/bench): callgrind_total(path), the instructions (Ir) of one callgrind dump.
"""
from __future__ import annotations

import json
import re
import sys


def callgrind_total(path: str) -> int:
    """The Ir total of a callgrind dump: its `summary:` line (or `totals:` in older formats)."""
    text = open(path, errors="replace").read()
    for prefix in ("summary:", "totals:"):
        m = re.search(r"^" + prefix + r"\s+(\d+)", text, re.M)
        if m:
            return int(m.group(1))
    raise SystemExit(f"no summary in {path}")


def all_good(path: str, count: int) -> bool:
    # gwbench's JSON (Nighthawk's shape): results[0] is the whole run, its counters a list of {name, value}.
    counters = {c["name"]: c["value"] for c in json.load(open(path))["results"][0]["counters"]}
    return counters.get("status_2xx") == count == counters.get("responses")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "all-good":
        sys.exit(0 if all_good(sys.argv[2], int(sys.argv[3])) else 1)
    sys.exit(__doc__)
