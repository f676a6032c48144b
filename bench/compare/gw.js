// bench/compare/gw.js: graphile-worker 0.18 driver (enqueue bulk/single, drain, latency) against
// its own database "gw" in the shared throwaway cluster. Runs the worker in this Node process;
// handlers are no-ops. Single-threaded (the event loop).
"use strict";

const path = require("path");
const L = require("./lib");

const DB = "gw";
let gwMod = null;
async function gwLib() {
  if (!gwMod) gwMod = await import(path.join(L.PEERS, "graphile-worker", "dist", "index.js"));
  return gwMod;
}

function quietLogger(gw) {
  return new gw.Logger(() => (level, message) => {
    if (level === "error") process.stderr.write(`[graphile-worker] ${message}\n`);
  });
}

// Settings from https://worker.graphile.org/docs/performance (the preset behind its published
// numbers) and the 0.18 type docs in node_modules/graphile-worker/dist/index.d.ts.
const BEST = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
};

async function setup(url) {
  await L.recreateDb(url, DB);
  const gw = await gwLib();
  const utils = await gw.makeWorkerUtils({ connectionString: L.connString(url, DB), logger: quietLogger(gw) });
  await utils.migrate();
  return utils;
}

async function remaining(client) {
  return Number(await L.q1(client, "SELECT count(*) FROM graphile_worker._private_jobs"));
}

// Bulk: addJobs in chunks of `chunk`; returns jobs/s.
async function enqueueBulk(utils, n, chunk = 10000) {
  const t = L.nowMs();
  for (let i = 0; i < n; i += chunk) {
    const m = Math.min(chunk, n - i);
    const specs = new Array(m);
    for (let k = 0; k < m; ++k) specs[k] = { identifier: "noop", payload: {} };
    await utils.addJobs(specs);
  }
  return n / ((L.nowMs() - t) / 1000);
}

async function enqueueSingle(utils, n) {
  const t = L.nowMs();
  for (let i = 0; i < n; ++i) await utils.addJob("noop_single", {});
  const rate = n / ((L.nowMs() - t) / 1000);
  await utils.withPgClient((c) => c.query("DELETE FROM graphile_worker._private_jobs"));
  return rate;
}

// Pre-enqueues n jobs, then runs a worker with `settings` until they are all gone or maxSeconds
// passed. jobs/s = jobs finished (gone from the table) / (last finish seen - first handler start).
async function drain(url, utils, n, settings, maxSeconds) {
  const gw = await gwLib();
  await utils.withPgClient((c) => c.query("DELETE FROM graphile_worker._private_jobs"));
  await enqueueBulk(utils, n);
  const client = await L.connect(url, DB);
  let first = null;
  let calls = 0;
  const runner = await gw.run({
    preset: { worker: { connectionString: L.connString(url, DB), ...settings } },
    logger: quietLogger(gw),
    taskList: {
      noop: async () => {
        if (first === null) first = L.nowMs();
        ++calls;
      },
    },
    noHandleSignals: true,
  });
  const deadline = L.nowMs() + maxSeconds * 1000;
  let left = n;
  let end = null;
  for (;;) {
    await L.sleep(calls >= n ? 5 : 50);
    // Ask the database only once every job has reached the handler (a count(*) on the job
    // table during the run would steal database time from it).
    if (calls < n && L.nowMs() <= deadline) continue;
    left = await remaining(client);
    if (left === 0) {
      end = L.nowMs();
      break;
    }
    if (L.nowMs() > deadline) {
      end = L.nowMs();
      break;
    }
  }
  await runner.stop();
  await client.end();
  const done = n - left;
  const secs = (end - (first ?? end)) / 1000;
  return { jobs_per_s: secs > 0 ? done / secs : null, done, seconds: secs, capped: left > 0 };
}

// Steady `rate` jobs/s for `seconds`; enqueue-to-handler-start from timestamps in the payload.
async function latency(url, utils, rate, seconds, settings) {
  const gw = await gwLib();
  await utils.withPgClient((c) => c.query("DELETE FROM graphile_worker._private_jobs"));
  const lat = [];
  const started = new Map();
  const committed = new Map();
  const runner = await gw.run({
    preset: { worker: { connectionString: L.connString(url, DB), ...settings } },
    logger: quietLogger(gw),
    taskList: { lat: async (p, helpers) => {
      const now = L.nowMs();
      lat.push(now - p.t);
      started.set(String(helpers.job.id), now);
    } },
    noHandleSignals: true,
  });
  await L.sleep(500);
  const total = Math.round(rate * seconds);
  const sent = await L.paced(rate, total, () =>
    utils.addJob("lat", { t: L.nowMs() }).then((j) => committed.set(String(j.id), L.nowMs())));
  const deadline = L.nowMs() + 30000;
  while (lat.length < total - sent.failed && L.nowMs() < deadline) await L.sleep(20);
  await runner.stop();
  return { ...summary(lat, started, committed, total), ...sent };
}

// Percentiles from the enqueue call, and from the moment the enqueue call returned (committed).
function summary(lat, started, committed, total) {
  lat.sort((a, b) => a - b);
  const fc = [];
  for (const [id, t] of started) if (committed.has(id)) fc.push(t - committed.get(id));
  fc.sort((a, b) => a - b);
  return { p50_ms: L.percentile(lat, 0.5), p99_ms: L.percentile(lat, 0.99), n: lat.length, sent: total,
    commit_p50_ms: L.percentile(fc, 0.5), commit_p99_ms: L.percentile(fc, 0.99) };
}

module.exports = { summary, DB, BEST, setup, enqueueBulk, enqueueSingle, drain, latency };
