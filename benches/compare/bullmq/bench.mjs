// BullMQ through the same four measurements as benches/redis_throughput.rs, on the
// Redis given by REDIS_PORT (db 1): one-by-one enqueue (sequential and 32 callers),
// bulk enqueue, drain of a backlog by one worker process with results kept, and the
// submit-to-result round trip. Counts scale with HQ_BENCH_SCALE, the worker's
// concurrency with HQ_BENCH_CONCURRENCY, as in the Rust benchmark.
import { Queue, Worker, QueueEvents } from "bullmq";
import IORedis from "ioredis";

const port = Number(process.env.REDIS_PORT ?? 6379);
const scale = Number(process.env.HQ_BENCH_SCALE ?? 1);
const concurrency = Number(process.env.HQ_BENCH_CONCURRENCY ?? 64);
// BullMQ takes ready-made clients in an ES module; each user gets its own.
const client = () => new IORedis({ host: "127.0.0.1", port, db: 1, maxRetriesPerRequest: null });
const connection = client();
const n = (x) => Math.max(100, Math.floor(x * scale));

function pct(lat, p) {
  const s = [...lat].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((s.length * p) / 100) - 1))];
}
function row(name, count, ms, lat, extra = "") {
  const rate = (count / (ms / 1000)).toFixed(0);
  const l = lat ? `p50 ${pct(lat, 50).toFixed(3)} ms, p90 ${pct(lat, 90).toFixed(3)} ms, p99 ${pct(lat, 99).toFixed(3)} ms, p99.9 ${pct(lat, 99.9).toFixed(3)} ms` : extra;
  console.log(`${name.padEnd(34)} ${String(count).padStart(9)} tasks ${rate.padStart(10)} tasks/s   ${l}`);
}
// One measurement for benches/compare/table.py.
function bench(metric, fields) {
  console.log("BENCH " + JSON.stringify({ system: "BullMQ", metric, ...fields }));
}
function rateFields(count, ms, lat) {
  const f = { n: count, rate: count / (ms / 1000) };
  if (lat) Object.assign(f, { p50_ms: pct(lat, 50), p90_ms: pct(lat, 90), p99_ms: pct(lat, 99), p999_ms: pct(lat, 99.9) });
  return f;
}
// The server's CPU time so far (user + system), in seconds.
async function redisCpu() {
  const info = await connection.info("cpu");
  const get = (k) => Number((info.match(new RegExp(`${k}:([0-9.]+)`)) ?? [0, 0])[1]);
  return get("used_cpu_user") + get("used_cpu_sys");
}
const now = () => Number(process.hrtime.bigint()) / 1e6;

const queue = new Queue("bench", { connection });
await queue.obliterate({ force: true });
console.log(`BullMQ ${process.env.npm_package_dependencies_bullmq ?? "6.7.0"}: Redis on loopback, results kept, worker concurrency ${concurrency}\n`);

// 1. one by one, sequential
{
  const count = n(20000), lat = [];
  const t = now();
  for (let i = 0; i < count; i++) { const t0 = now(); await queue.add("noop", { x: i }); lat.push(now() - t0); }
  const ms = now() - t;
  row("enqueue one by one, sequential", count, ms, lat);
  bench("enqueue_sequential", rateFields(count, ms, lat));
  await queue.obliterate({ force: true });
}
// 1b. 32 concurrent callers
{
  const count = n(100000), callers = 32, lat = [];
  const t = now();
  await Promise.all([...Array(callers).keys()].map(async (c) => {
    for (let i = c; i < count; i += callers) { const t0 = now(); await queue.add("noop", { x: i }); lat.push(now() - t0); }
  }));
  const ms = now() - t;
  row("enqueue one by one, 32 callers", count, ms, lat);
  bench("enqueue_32_callers", rateFields(count, ms, lat));
  await queue.obliterate({ force: true });
}
// 2. bulk
async function bulk(count) {
  for (let s = 0; s < count; s += 1000) {
    const jobs = [];
    for (let i = s; i < Math.min(count, s + 1000); i++) jobs.push({ name: "noop", data: { x: i } });
    await queue.addBulk(jobs);
  }
}
{
  const count = n(200000);
  const t = now();
  await bulk(count);
  const ms = now() - t;
  row("enqueue in bulk (batches of 1000)", count, ms);
  bench("enqueue_bulk", rateFields(count, ms));
  await queue.obliterate({ force: true });
}
// 3. drain a backlog with one worker process (this one), results kept
{
  const count = n(100000);
  await bulk(count);
  let done = 0, t, finished;
  const all = new Promise((r) => (finished = r));
  const worker = new Worker("bench", async (job) => job.data.x, { connection: client(), concurrency, autorun: false });
  worker.on("completed", () => { if (++done === count) finished(); });
  const cpu = await redisCpu();
  t = now();
  worker.run();
  await all;
  const ms = now() - t;
  const cpuUs = ((await redisCpu()) - cpu) * 1e6 / count;
  const rss = process.memoryUsage().rss / 1048576;
  row("drain backlog (1 worker process)", count, ms, null, `results stored (completed events); Redis CPU ${cpuUs.toFixed(1)} us/task; RSS ${rss.toFixed(0)} MiB`);
  bench("drain", { ...rateFields(count, ms), concurrency, redis_cpu_us_per_task: cpuUs });
  bench("rss_after_drain", { mib: rss });
  await worker.close();
  await queue.obliterate({ force: true });
}
// 4. submit-to-result round trip
{
  const count = n(5000), lat = [];
  const events = new QueueEvents("bench", { connection: client() });
  await events.waitUntilReady();
  const worker = new Worker("bench", async (job) => job.data.x, { connection: client(), concurrency });
  await worker.waitUntilReady();
  const t = now();
  for (let i = 0; i < count; i++) {
    const t0 = now();
    const job = await queue.add("noop", { x: i });
    await job.waitUntilFinished(events);
    lat.push(now() - t0);
  }
  const ms = now() - t;
  row("submit-to-result round trip", count, ms, lat);
  bench("round_trip", rateFields(count, ms, lat));
  await worker.close();
  await events.close();
}
// 5. start-up: a job waits; a new worker starts; until its result is stored
{
  await queue.obliterate({ force: true });
  const events = new QueueEvents("bench", { connection: client() });
  await events.waitUntilReady();
  const job = await queue.add("noop", { x: 7 });
  const t = now();
  const worker = new Worker("bench", async (job) => job.data.x, { connection: client(), concurrency });
  await job.waitUntilFinished(events);
  const ms = now() - t;
  row("start-up to the first result", 1, ms, null);
  bench("startup_to_first_result", { ms });
  await worker.close();
  await events.close();
}
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);
