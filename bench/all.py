"""Run every benchmark and print one table of the ratios each measured in its own run.

    python bench/all.py [--db postgres|sqlite]      (what `make bench` runs)

Each benchmark measures its baseline in the same run as the contender, so the ratios hold on a
noisy machine where absolute times do not. Exits non-zero if any target was missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["enqueue.py", "receiver.py", "e2e.py", "export.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    arguments = parser.parse_args()
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
        summary = Path(handle.name)
    failed = []
    for benchmark in BENCHMARKS:
        print(f"\n== {benchmark} ==", flush=True)
        result = subprocess.run(
            [sys.executable, str(HERE / benchmark), f"--db={arguments.db}"],
            env={**os.environ, "BENCH_SUMMARY": str(summary)},
            check=False,
        )
        if result.returncode:
            failed.append(benchmark)
    rows = [json.loads(line) for line in summary.read_text().splitlines()]
    summary.unlink()
    width = max(len(row["measure"]) for row in rows) + 2
    print(f"\n{'measure':<{width}}{'value':>14}  {'target':<12}result")
    for row in rows:
        verdict = "" if not row["target"] else ("met" if row["met"] else "MISSED")
        print(f"{row['measure']:<{width}}{row['value']:>14}  {row['target']:<12}{verdict}")
    if failed:
        print(f"\ntargets missed in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
