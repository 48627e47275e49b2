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
function row(name, count, ms, lat) {
  const rate = (count / (ms / 1000)).toFixed(0);
  const extra = lat ? `p50 ${pct(lat, 50).toFixed(3)} ms, p90 ${pct(lat, 90).toFixed(3)} ms, p99 ${pct(lat, 99).toFixed(3)} ms` : "";
  console.log(`${name.padEnd(34)} ${String(count).padStart(9)} tasks ${rate.padStart(10)} tasks/s   ${extra}`);
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
  row("enqueue one by one, sequential", count, now() - t, lat);
  await queue.obliterate({ force: true });
}
// 1b. 32 concurrent callers
{
  const count = n(100000), callers = 32, lat = [];
  const t = now();
  await Promise.all([...Array(callers).keys()].map(async (c) => {
    for (let i = c; i < count; i += callers) { const t0 = now(); await queue.add("noop", { x: i }); lat.push(now() - t0); }
  }));
  row("enqueue one by one, 32 callers", count, now() - t, lat);
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
  row("enqueue in bulk (batches of 1000)", count, now() - t);
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
  t = now();
  worker.run();
  await all;
  row("drain backlog (1 worker process)", count, now() - t, null);
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
  row("submit-to-result round trip", count, now() - t, lat);
  await worker.close();
  await events.close();
}
await queue.obliterate({ force: true });
await queue.close();
process.exit(0);
