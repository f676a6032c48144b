// bench/compare/gw.js: graphile-worker 0.18 driver in database "gw" of the run's cluster:
// schema (workerUtils.migrate), bulk enqueue (addJobs in chunks of 10,000), single enqueue
// (addJob), the worker (peer.js in its own process), and the queries the fair harness needs.
// Same interface as ours.js and boss.js. Single-threaded (the event loop).
"use strict";

const path = require("path");
const L = require("./lib");

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

// The documented best (https://worker.graphile.org/docs/performance, the configuration behind
// its published numbers; the same options in the 0.18 package's dist/index.d.ts: localQueue.size,
// completeJobBatchDelay, failJobBatchDelay, concurrentJobs, maxPoolSize) and two neighbours for
// the sweep.
const DOC_BEST = { concurrentJobs: 24, maxPoolSize: 25, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 };
const SWEEP = [
  { key: "gw_c24_lq500", label: "graphile-worker documented best: concurrentJobs 24, maxPoolSize 25, localQueue 500, completeJobBatchDelay 0", settings: DOC_BEST },
  { key: "gw_c48_lq1000", label: "graphile-worker concurrentJobs 48, maxPoolSize 50, localQueue 1000, completeJobBatchDelay 0",
    settings: { ...DOC_BEST, concurrentJobs: 48, maxPoolSize: 50, localQueue: { size: 1000 } } },
  { key: "gw_c24_lq500_d5", label: "graphile-worker documented best with completeJobBatchDelay 5 ms",
    settings: { ...DOC_BEST, completeJobBatchDelay: 5, failJobBatchDelay: 5 } },
];

class Gw {
  constructor(cluster, work, db = "gw") {
    this.name = "gw";
    this.cluster = cluster;
    this.db = db;
    this.work = work;
    this.schemas = ["graphile_worker"];
    this.task = "noop";
    // node-postgres / pg-connection-string form of the run's connection type.
    const c = cluster.pgConfig(db);
    this.conn = cluster.conn === "tcp"
      ? `postgres://${c.user}@${c.host}:${c.port}/${db}`
      : `postgres:///${db}?host=${encodeURIComponent(c.host)}&port=${c.port}&user=${c.user}`;
  }

  connectionStrings() {
    return [this.conn];
  }

  async setup() {
    await this.cluster.recreateDb(this.db);
    const gw = await gwLib();
    this.utils = await gw.makeWorkerUtils({ connectionString: this.conn, logger: quietLogger(gw), maxPoolSize: L.PRODUCER_POOL });
    await this.utils.migrate();
    this.h = await this.cluster.connect(this.db, "bench_harness");
    // Register the task identifier once (addJobs does it too); the pgbench floor needs its id.
    await this.utils.addJobs([{ identifier: this.task, payload: {} }]);
    await this.reset();
    this.taskId = Number(await L.q1(this.h, "SELECT id FROM graphile_worker._private_tasks WHERE identifier = $1", [this.task]));
  }

  async close() {
    if (this.utils) await this.utils.release();
    if (this.h) await this.h.end();
  }

  async reset() {
    await this.h.query("TRUNCATE graphile_worker._private_jobs");
  }

  async enqueue(n, chunk = 10000) {
    const t = L.nowMs();
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      const specs = new Array(m);
      for (let k = 0; k < m; ++k) specs[k] = { identifier: this.task, payload: {} };
      await this.utils.addJobs(specs);
    }
    const seconds = (L.nowMs() - t) / 1000;
    return { seconds, jobs_per_s: n / seconds };
  }

  async countQueued() {
    return Number(await L.q1(this.h, "SELECT count(*) FROM graphile_worker._private_jobs WHERE is_available"));
  }

  // A completed job is deleted in the statement that completes it: no row left = every
  // completion committed. The same primary-key probe as ours.
  get unfinishedSql() {
    return "SELECT id FROM graphile_worker._private_jobs ORDER BY id LIMIT 1";
  }

  // Completed = enqueued - left (graphile-worker keeps no row for a finished job).
  async countDone(enqueued) {
    return enqueued - Number(await L.q1(this.h, "SELECT count(*) FROM graphile_worker._private_jobs"));
  }

  async lastCompletionMs() {
    return null;  // no completion timestamp: the row is deleted
  }

  async producer() {
    return {
      send: async () => String((await this.utils.addJob(this.task, {})).id),
      sendBatch: async (k) => {
        await this.utils.addJobs(Array.from({ length: k }, () => ({ identifier: this.task, payload: {} })));
      },
      close: async () => {},
    };
  }

  worker(settings, tag, record = false) {
    return L.peerWorker({ system: "gw", conn: this.conn, settings, queue: this.task, record },
      path.join(this.work, `gw-${tag}.log`));
  }
}

module.exports = { Gw, SWEEP, DOC_BEST, gwLib };
