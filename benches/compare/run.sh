#!/usr/bin/env bash
# hippo-queue, BullMQ and Celery through the same measurements, one right after the
# other, each on a fresh local redis-server, then one table with the ratios.
#
#   benches/compare/run.sh            # all three (a few minutes)
#   benches/compare/run.sh --quick    # hippo-queue and BullMQ at a tenth of the counts
#
# HQ_BENCH_SCALE multiplies the counts, HQ_BENCH_CONCURRENCY sets every worker's
# concurrency (default 64); HQ_BENCH_BIN names an already built redis_throughput
# binary (to compare two builds, or to skip the build). BullMQ is installed with npm into bullmq/node_modules,
# Celery with pip into a temporary virtual environment.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
quick=0
if [ "${1:-}" = "--quick" ]; then
    quick=1
    export HQ_BENCH_SCALE="${HQ_BENCH_SCALE:-0.1}"
fi
out=$(mktemp -d)
servers=()
cleanup() {
    for p in "${servers[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$out"
}
trap cleanup EXIT

# fresh_redis: starts a redis-server on a free port and prints the port.
fresh_redis() {
    local port dir
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    dir=$(mktemp -d -p "$out")
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    echo "$port"
}

echo "building and installing (not timed)..."
bin="${HQ_BENCH_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$root" && cargo bench --bench redis_throughput --no-run >/dev/null 2>&1)
    bin=$(cd "$root" && cargo bench --bench redis_throughput --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="redis_throughput" and m.get("executable"): print(m["executable"])')
fi
(cd "$here/bullmq" && npm install --no-audit --no-fund --silent >/dev/null)
if [ $quick -eq 0 ]; then
    venv="$out/celery-venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$here/celery/requirements.txt"
fi

port=$(fresh_redis)
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), one client's ping:"
redis-benchmark -p "$port" -n 20000 -c 1 -t ping --csv 2>/dev/null |
    python3 -c 'import csv,json,sys
rows=[r for r in csv.DictReader(sys.stdin) if r["test"]=="PING_MBULK"]
p50=float(rows[0]["p50_latency_ms"])
print(f"redis-benchmark -c 1 ping: p50 {p50:.3f} ms")
print("BENCH "+json.dumps({"system":"redis","metric":"ping","p50_ms":p50}))' | tee "$out/ping.txt"
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true

echo; echo "==== hippo-queue ===="
"$bin" --bench | grep -v "in-memory" | tee "$out/hippo.txt"

echo; echo "==== BullMQ ===="
port=$(fresh_redis); servers+=("$port")
(cd "$here/bullmq" && REDIS_PORT="$port" node bench.mjs) | tee "$out/bullmq.txt"

files=("$out/ping.txt" "$out/hippo.txt" "$out/bullmq.txt")
if [ $quick -eq 0 ]; then
    echo; echo "==== Celery ===="
    port=$(fresh_redis); servers+=("$port")
    (cd "$here/celery" && REDIS_PORT="$port" "$venv/bin/python" bench.py) | tee "$out/celery.txt"
    files+=("$out/celery.txt")
fi

echo
python3 "$here/table.py" "${files[@]}"
