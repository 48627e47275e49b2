#!/usr/bin/env python3
"""Reads the BENCH lines of the three benchmarks (files given as arguments) and prints
one Markdown table: each measurement per system, and how many times hippo-queue's
figure is better than each other's (rates: ours / theirs; times and memory: theirs /
ours)."""
import json
import sys

ROWS = [
    ("enqueue_sequential", "rate", "enqueue one by one, sequential (tasks/s)", True),
    ("enqueue_sequential", "p50_ms", "  its p50 (ms)", False),
    ("enqueue_32_callers", "rate", "enqueue one by one, 32 callers (tasks/s)", True),
    ("enqueue_bulk", "rate", "enqueue in bulk, batches of 1,000 (tasks/s)", True),
    ("drain", "rate", "drain to the last result stored and acked (tasks/s)", True),
    ("drain", "redis_cpu_us_per_task", "  Redis CPU per task in the drain (us)", False),
    ("drain_default", "rate", "drain, default concurrency (hippo-queue: the CPU count) (tasks/s)", True),
    ("drain_default", "redis_cpu_us_per_task", "  Redis CPU per task in it (us)", False),
    ("round_trip", "p50_ms", "round trip p50 (ms)", False),
    ("round_trip", "p90_ms", "round trip p90 (ms)", False),
    ("round_trip", "p99_ms", "round trip p99 (ms)", False),
    ("round_trip", "p999_ms", "round trip p99.9 (ms)", False),
    ("rss_after_drain", "mib", "RSS after the drain, MiB (bench process; Celery: its worker processes summed)", False),
    ("startup_to_first_result", "ms", "start-up to the first result (ms)", False),
]
SYSTEMS = ["hippo-queue", "BullMQ", "Celery"]


def read(paths):
    figures = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("BENCH "):
                    rec = json.loads(line[6:])
                    figures[(rec["system"], rec["metric"])] = rec
    return figures


def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def main(paths):
    figures = read(paths)
    others = [s for s in SYSTEMS[1:] if any(k[0] == s for k in figures)]
    head = ["measurement"] + [s for s in SYSTEMS if s == SYSTEMS[0] or s in others]
    head += [f"× {s}" for s in others]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for metric, field, label, higher_better in ROWS:
        vals = {s: figures.get((s, metric), {}).get(field) for s in SYSTEMS}
        if vals[SYSTEMS[0]] is None and not any(vals[s] is not None for s in others):
            continue
        cells = [label, fmt(vals[SYSTEMS[0]])] + [fmt(vals[s]) for s in others]
        ours = vals[SYSTEMS[0]]
        for s in others:
            theirs = vals[s]
            if not ours or not theirs:
                cells.append("-")
            else:
                ratio = ours / theirs if higher_better else theirs / ours
                cells.append(f"{ratio:.1f}×")
        print("| " + " | ".join(cells) + " |")
    conc = figures.get((SYSTEMS[0], "drain"), {}).get("concurrency")
    print(f"\nConcurrency {conc}; × is how many times hippo-queue's figure is better.")
    ping = figures.get(("redis", "ping"), {}).get("p50_ms")
    rt = figures.get((SYSTEMS[0], "round_trip"), {}).get("p50_ms")
    if ping and rt:
        print(f"redis-benchmark -c 1 ping p50 {ping:.3f} ms; hippo-queue's round trip p50 is {rt / ping:.1f}× that.")


if __name__ == "__main__":
    main(sys.argv[1:])
