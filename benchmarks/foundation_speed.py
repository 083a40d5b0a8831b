"""Speed of the foundation stages' library code, as ratios against a baseline in the same process.

Baseline: decoding the same corpus from JSONL (json.loads per line), the
unavoidable cost of reading a split. Measured: corpus generation, PII
detection + masking, canary insertion. Writes JSON (default
benchmarks/results/foundation_speed.json).

    python benchmarks/foundation_speed.py --mb 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

from canaryaudit.canaries import CanaryPlan, insert_canaries, make_canaries, parse_format
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.io import atomic_open, dumps_line
from canaryaudit.pii.detectors import DETECTORS, build_detectors
from canaryaudit.pii.sanitize import sanitize_text


CPU_SECONDS: dict[str, float] = {}  # per measurement: the least CPU time of this process over the repeats


def best_of(repeats: int, fn, name: str) -> float:
    """Minimum wall time of ``repeats`` calls (s): the least noisy estimate on a shared machine. The least CPU
    time of this process goes to CPU_SECONDS[name]: on a machine busy with other work, wall time mostly
    measures the wait for a core, CPU time the work itself."""
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    CPU_SECONDS[name] = min(cpu_times)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/foundation_speed.json")
    args = parser.parse_args()

    target = int(args.mb * 1e6)
    docs = list(generate_emails(0, target))
    texts = [d.text for d in docs]
    size_mb = sum(len(t.encode()) for t in texts) / 1e6
    lines = [dumps_line({"doc_id": d.doc_id, "text": d.text}) for d in docs]
    detectors = build_detectors(DETECTORS.names())
    fmt = parse_format("number", "the random number is {d}x9", {"d": "0123456789"})

    baseline = best_of(args.repeats, lambda: [json.loads(line) for line in lines], "json_decode")
    timings = {
        "generate": best_of(args.repeats, lambda: list(generate_emails(0, target)), "generate"),
        "sanitize": best_of(args.repeats, lambda: [sanitize_text(t, detectors, lambda _t: "mask") for t in texts],
                            "sanitize"),
        "insert_canaries": best_of(
            args.repeats,
            lambda: insert_canaries(texts, make_canaries(fmt, CanaryPlan((1, 4, 16, 64), 2, 64), random.Random(0)),
                                    random.Random(1)),
            "insert_canaries",
        ),
    }
    cpu = {k: CPU_SECONDS[k] for k in timings}
    result = {
        "corpus_mb": round(size_mb, 3),
        "documents": len(docs),
        "baseline_json_decode_s": baseline,
        "seconds": timings,
        "ratio_to_json_decode": {k: v / baseline for k, v in timings.items()},
        "mb_per_s": {k: size_mb / v for k, v in timings.items()},
        "cpu_seconds": cpu,
        "cpu_ratio_to_json_decode": {k: v / CPU_SECONDS["json_decode"] for k, v in cpu.items()},
        "mb_per_cpu_s": {k: size_mb / v for k, v in cpu.items()},
        "load_average": os.getloadavg(),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    with atomic_open(Path(args.out)) as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
