#!/usr/bin/env bash
# hippo-queue and BullMQ through the same measurements, one right after the other,
# each on a fresh local redis-server, so that their ratio is measured under the same
# conditions.
#   benches/compare/run.sh            (HQ_BENCH_SCALE and HQ_BENCH_CONCURRENCY apply)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
(cd "$here/bullmq" && npm install --no-audit --no-fund --silent >/dev/null)
echo "==== hippo-queue ===="
(cd "$root" && cargo bench --bench redis_throughput 2>/dev/null | grep -v "in-memory")
echo
echo "==== BullMQ ===="
(cd "$here/bullmq" && REDIS_PORT="$port" node bench.mjs)
