// bench/compare/boss.js: pg-boss 12 driver in database "boss" of the run's cluster: schema (the
// first start() migrates), one queue "noop" (notify on), bulk enqueue (insert in chunks of
// 10,000), single enqueue (send), the worker (peer.js in its own process), and the queries the
// fair harness needs. Same interface as ours.js and gw.js. Single-threaded (the event loop).
"use strict";

const path = require("path");
const L = require("./lib");

let bossMod = null;
async function bossLib() {
  if (!bossMod) bossMod = await import(path.join(L.PEERS, "pg-boss", "dist", "index.js"));
  return bossMod;
}

// pg-boss 12's fastest documented knobs (node_modules/pg-boss/dist/types.d.ts): batch fetch with
// burst mode (keep fetching while batches come back full), LISTEN/NOTIFY wake-ups (instance
// useListenNotify + queue notify), the shortest allowed poll interval, a pool for the local
// workers. The sweep varies batch size and local concurrency.
const base = { ctor: { useListenNotify: true, max: 40 }, work: { burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 } };
const SWEEP = [
  { key: "boss_b500_x4", label: "pg-boss batchSize 500, localConcurrency 4, burst, notify, pool 40",
    settings: { ctor: base.ctor, work: { ...base.work, batchSize: 500, localConcurrency: 4 } } },
  { key: "boss_b100_x8", label: "pg-boss batchSize 100, localConcurrency 8, burst, notify, pool 40",
    settings: { ctor: base.ctor, work: { ...base.work, batchSize: 100, localConcurrency: 8 } } },
  { key: "boss_b1000_x2", label: "pg-boss batchSize 1000, localConcurrency 2, burst, notify, pool 40",
    settings: { ctor: base.ctor, work: { ...base.work, batchSize: 1000, localConcurrency: 2 } } },
];

class Boss {
  constructor(cluster, work, db = "boss") {
    this.name = "boss";
    this.cluster = cluster;
    this.db = db;
    this.work = work;
    this.schemas = ["pgboss"];
    this.queue = "noop";
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
    const { PgBoss } = await bossLib();
    // The harness's own instance: enqueues only (no maintenance, no cron).
    this.boss = new PgBoss({ connectionString: this.conn, supervise: false, schedule: false, max: L.PRODUCER_POOL });
    this.boss.on("error", (e) => process.stderr.write(`[pg-boss] ${e.message}\n`));
    await this.boss.start();
    await this.boss.createQueue(this.queue, { notify: true });
    this.h = await this.cluster.connect(this.db, "bench_harness");
    this.table = await L.q1(this.h, "SELECT table_name FROM pgboss.queue WHERE name = $1", [this.queue]);
  }

  async close() {
    if (this.boss) await this.boss.stop({ graceful: false, close: true, timeout: 2000 });
    if (this.h) await this.h.end();
  }

  async reset() {
    await this.h.query(`TRUNCATE pgboss.${this.table}`);
  }

  async enqueue(n, chunk = 10000) {
    const t = L.nowMs();
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      const jobs = new Array(m);
      for (let k = 0; k < m; ++k) jobs[k] = { data: {} };
      await this.boss.insert(this.queue, jobs);
    }
    const seconds = (L.nowMs() - t) / 1000;
    return { seconds, jobs_per_s: n / seconds };
  }

  async countQueued() {
    return Number(await L.q1(this.h, `SELECT count(*) FROM pgboss.${this.table} WHERE name = $1 AND state = 'created'`, [this.queue]));
  }

  // A finished job stays as a 'completed' row: unfinished = created, retry or active (the
  // index job_i14 covers the live states).
  get unfinishedSql() {
    return `SELECT id FROM pgboss.${this.table} WHERE name = '${this.queue}' AND state IN ('created', 'retry', 'active') LIMIT 1`;
  }

  async countDone() {
    return Number(await L.q1(this.h, `SELECT count(*) FROM pgboss.${this.table} WHERE name = $1 AND state = 'completed'`, [this.queue]));
  }

  async lastCompletionMs() {
    const v = await L.q1(this.h, `SELECT extract(epoch from max(completed_on)) * 1000 FROM pgboss.${this.table} WHERE name = $1`, [this.queue]);
    return v === null ? null : Number(v);
  }

  async producer() {
    return {
      send: async () => String(await this.boss.send(this.queue, {})),
      sendBatch: async (k) => {
        await this.boss.insert(this.queue, Array.from({ length: k }, () => ({ data: {} })));
      },
      close: async () => {},
    };
  }

  worker(settings, tag, record = false) {
    return L.peerWorker({ system: "boss", conn: this.conn, settings, queue: this.queue, record },
      path.join(this.work, `boss-${tag}.log`));
  }
}

module.exports = { Boss, SWEEP, bossLib };
