// bench/compare/boss.js: pg-boss 12 driver (enqueue bulk/single, drain, latency) against its
// own database "boss" in the shared throwaway cluster. Runs the workers in this Node process;
// handlers are no-ops. Single-threaded (the event loop).
"use strict";

const path = require("path");
const L = require("./lib");

const DB = "boss";
let bossMod = null;
async function bossLib() {
  if (!bossMod) bossMod = await import(path.join(L.PEERS, "pg-boss", "dist", "index.js"));
  return bossMod;
}

// Fastest documented settings of pg-boss 12 (node_modules/pg-boss/dist/types.d.ts): batch fetch
// of 500 with burst mode (keep fetching while batches come back full), LISTEN/NOTIFY wake-ups
// (instance useListenNotify + queue notify), the shortest allowed poll interval.
const BEST = {
  ctor: { useListenNotify: true, max: 40 },
  queue: { notify: true },
  work: { batchSize: 500, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, localConcurrency: 4 },
};
const DEFAULTS = { ctor: {}, queue: {}, work: {} };

async function open(url, settings) {
  const { PgBoss } = await bossLib();
  const boss = new PgBoss({ connectionString: L.connString(url, DB), ...settings.ctor });
  boss.on("error", (e) => process.stderr.write(`[pg-boss] ${e.message}\n`));
  await boss.start();
  return boss;
}

async function setup(url) {
  await L.recreateDb(url, DB);
  const boss = await open(url, DEFAULTS);
  await boss.createQueue("noop");
  await boss.createQueue("noop_single");
  await boss.stop({ graceful: false, close: true });
}

async function remaining(client, name) {
  return Number(await L.q1(client,
    "SELECT count(*) FROM pgboss.job WHERE name = $1 AND state IN ('created', 'retry', 'active')", [name]));
}

async function enqueueBulk(boss, n, name = "noop", chunk = 10000) {
  const t = L.nowMs();
  for (let i = 0; i < n; i += chunk) {
    const m = Math.min(chunk, n - i);
    const jobs = new Array(m);
    for (let k = 0; k < m; ++k) jobs[k] = { data: {} };
    await boss.insert(name, jobs);
  }
  return n / ((L.nowMs() - t) / 1000);
}

async function enqueueSingle(url, n) {
  const boss = await open(url, DEFAULTS);
  const t = L.nowMs();
  for (let i = 0; i < n; ++i) await boss.send("noop_single", {});
  const rate = n / ((L.nowMs() - t) / 1000);
  await boss.deleteAllJobs("noop_single");
  await boss.stop({ graceful: false, close: true });
  return rate;
}

async function bulk(url, n) {
  const boss = await open(url, DEFAULTS);
  await boss.deleteAllJobs("noop");
  const rate = await enqueueBulk(boss, n);
  await boss.deleteAllJobs("noop");
  await boss.stop({ graceful: false, close: true });
  return rate;
}

// Pre-enqueues n jobs on a fresh queue, works it with `settings` until done or maxSeconds.
async function drain(url, n, settings, maxSeconds, tag) {
  const name = `drain_${tag}`;
  const boss = await open(url, settings);
  await boss.createQueue(name, settings.queue);
  await enqueueBulk(boss, n, name);
  const client = await L.connect(url, DB);
  let first = null;
  let calls = 0;
  const handler = async (jobs) => {
    if (first === null) first = L.nowMs();
    calls += jobs.length;
  };
  if (Object.keys(settings.work).length) await boss.work(name, settings.work, handler);
  else await boss.work(name, handler);
  const deadline = L.nowMs() + maxSeconds * 1000;
  let left = n;
  let end = null;
  for (;;) {
    await L.sleep(calls >= n ? 5 : 50);
    // Ask the database only once every job has reached the handler (a count(*) on the job
    // table during the run would steal database time from it).
    if (calls < n && L.nowMs() <= deadline) continue;
    left = await remaining(client, name);
    if (left === 0 || L.nowMs() > deadline) {
      end = L.nowMs();
      break;
    }
  }
  await boss.offWork(name, { wait: false });
  await boss.stop({ graceful: false, close: true, timeout: 2000 });
  await client.end();
  const done = n - left;
  const secs = (end - (first ?? end)) / 1000;
  return { jobs_per_s: secs > 0 ? done / secs : null, done, seconds: secs, capped: left > 0 };
}

async function latency(url, rate, seconds, settings) {
  const name = "lat";
  const boss = await open(url, settings);
  await boss.createQueue(name, settings.queue);
  const lat = [];
  const started = new Map();
  const committed = new Map();
  await boss.work(name, settings.work, async (jobs) => {
    const now = L.nowMs();
    for (const j of jobs) {
      lat.push(now - j.data.t);
      started.set(String(j.id), now);
    }
  });
  await L.sleep(1000);
  const total = Math.round(rate * seconds);
  const sent = await L.paced(rate, total, () =>
    boss.send(name, { t: L.nowMs() }).then((id) => committed.set(String(id), L.nowMs())));
  const deadline = L.nowMs() + 30000;
  while (lat.length < total - sent.failed && L.nowMs() < deadline) await L.sleep(20);
  await boss.stop({ graceful: false, close: true, timeout: 2000 });
  return { ...require("./gw").summary(lat, started, committed, total), ...sent };
}

module.exports = { DB, BEST, DEFAULTS, setup, bulk, enqueueSingle, drain, latency };
