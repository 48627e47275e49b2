"""Celery through the same measurements as benches/redis_throughput.rs, on the Redis
given by REDIS_PORT: one-by-one enqueue (sequential and 32 threads), "bulk" enqueue (a
group of 1,000 signatures per call: Celery has no bulk send), a drain of a backlog by
one worker (prefork, HQ_BENCH_CONCURRENCY processes) to the last result stored and
acked, the submit-to-result round trip, the worker's RSS and its start-up to the first
result. Counts are smaller than the others' (Celery is slower; rates are per second)
and scale with HQ_BENCH_SCALE."""
import atexit
import json
import math
import os
import subprocess
import sys
import threading
import time

import redis
from celery import group

from benchapp import app, noop

port = int(os.environ.get("REDIS_PORT", "6379"))
scale = float(os.environ.get("HQ_BENCH_SCALE", "1"))
concurrency = int(os.environ.get("HQ_BENCH_CONCURRENCY", "64"))
broker = redis.Redis(port=port, db=1)
results = redis.Redis(port=port, db=2)
here = os.path.dirname(os.path.abspath(__file__))


def n(x):
    return max(100, int(x * scale))


def pct(lat, p):
    s = sorted(lat)
    return s[min(len(s) - 1, max(0, math.ceil(len(s) * p / 100) - 1))] if s else 0.0


def row(name, count, secs, lat=None, extra=""):
    if lat:
        extra = ", ".join(f"p{k} {pct(lat, v):.3f} ms" for k, v in (("50", 50), ("90", 90), ("99", 99), ("99.9", 99.9)))
    print(f"{name:<34} {count:>9} tasks {count / secs:>10.0f} tasks/s   {extra}", flush=True)


def bench(metric, fields):
    print("BENCH " + json.dumps({"system": "Celery", "metric": metric, **fields}), flush=True)


def rate_fields(count, secs, lat=None):
    f = {"n": count, "rate": count / secs}
    if lat:
        f.update(p50_ms=pct(lat, 50), p90_ms=pct(lat, 90), p99_ms=pct(lat, 99), p999_ms=pct(lat, 99.9))
    return f


def redis_cpu():
    info = broker.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def reset():
    broker.flushdb()
    results.flushdb()


def start_worker():
    cmd = [
        sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-P", "prefork",
        "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-l", "warning",
    ]
    env = dict(os.environ, PYTHONPATH=here)
    p = subprocess.Popen(cmd, cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    # a measurement that fails (a timeout on a loaded machine) must not leave 65
    # worker processes behind
    atexit.register(lambda: p.poll() is None and stop_worker(p))
    return p


def stop_worker(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def worker_rss_mib(p):
    """The resident memory of the worker and its pool processes."""
    out = subprocess.run(["ps", "-o", "rss=", "-g", str(p.pid)], capture_output=True, text=True).stdout
    return sum(int(x) for x in out.split()) / 1024


def settled():
    """Nothing waiting and nothing delivered but unacknowledged."""
    return broker.llen("celery") == 0 and broker.hlen("unacked") == 0


print(f"Celery {__import__('celery').__version__}: Redis on loopback, results stored, acks_late, "
      f"prefork worker concurrency {concurrency}, prefetch 4\n", flush=True)
reset()

# 1. one by one, sequential
count, lat = n(5000), []
t = time.perf_counter()
for i in range(count):
    t0 = time.perf_counter()
    noop.apply_async((i,))
    lat.append((time.perf_counter() - t0) * 1000)
secs = time.perf_counter() - t
row("enqueue one by one, sequential", count, secs, lat)
bench("enqueue_sequential", rate_fields(count, secs, lat))
reset()

# 1b. 32 concurrent callers (threads of one process)
count, callers, lat = n(5000), 32, []
lock = threading.Lock()


def caller(c):
    mine = []
    for i in range(c, count, callers):
        t0 = time.perf_counter()
        noop.apply_async((i,))
        mine.append((time.perf_counter() - t0) * 1000)
    with lock:
        lat.extend(mine)


threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
t = time.perf_counter()
for th in threads:
    th.start()
for th in threads:
    th.join()
secs = time.perf_counter() - t
row("enqueue one by one, 32 callers", count, secs, lat)
bench("enqueue_32_callers", rate_fields(count, secs, lat))
reset()


# 2. bulk: a group of 1,000 per call
def bulk(count):
    for s in range(0, count, 1000):
        group(noop.s(i) for i in range(s, min(count, s + 1000))).apply_async()


count = n(5000)
t = time.perf_counter()
bulk(count)
secs = time.perf_counter() - t
row("enqueue in bulk (groups of 1000)", count, secs)
bench("enqueue_bulk", rate_fields(count, secs))
reset()

# 3. drain of a backlog, from the first result stored to the last stored and acked
count = n(5000)
bulk(count)
results.flushdb()  # a group leaves no record of its own until it is joined
cpu = redis_cpu()
worker = start_worker()
while results.dbsize() == 0:
    time.sleep(0.001)
t = time.perf_counter()
while results.dbsize() < count or not settled():
    time.sleep(0.001)
secs = time.perf_counter() - t
cpu_us = (redis_cpu() - cpu) * 1e6 / count
rss = worker_rss_mib(worker)
row("drain backlog (1 worker process)", count, secs,
    extra=f"results stored and acked; Redis CPU {cpu_us:.1f} us/task; worker RSS {rss:.0f} MiB")
bench("drain", {**rate_fields(count, secs), "concurrency": concurrency, "redis_cpu_us_per_task": cpu_us})
bench("rss_after_drain", {"mib": rss})

# 4. round trip, with the worker of the drain
count, lat = n(500), []
t = time.perf_counter()
for i in range(count):
    t0 = time.perf_counter()
    noop.apply_async((i,)).get(timeout=10)
    lat.append((time.perf_counter() - t0) * 1000)
secs = time.perf_counter() - t
row("submit-to-result round trip", count, secs, lat)
bench("round_trip", rate_fields(count, secs, lat))
stop_worker(worker)

# 5. start-up: a task waits; a new worker starts; until its result is stored
reset()
waiting = noop.apply_async((7,))
t = time.perf_counter()
worker = start_worker()
waiting.get(timeout=60)
ms = (time.perf_counter() - t) * 1000
row("start-up to the first result", 1, ms / 1000)
bench("startup_to_first_result", {"ms": ms})
stop_worker(worker)
reset()
