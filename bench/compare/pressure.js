// bench/compare/pressure.js: throughput under MVCC pressure (issue 18's last goal). Every system
// with 32 job slots gets a steady offered load (800 jobs/s from the harness through the system's
// own producer API, one job per statement and commit (--pressure-batch K: K jobs per statement),
// from a pool of 32 connections; the achieved rate is recorded) in three cells:
//   clean           nothing else runs
//   idle_in_tx      one session opened a REPEATABLE READ transaction, took an xid
//                   (txid_current()) and stays idle in transaction for the whole cell: the xmin
//                   horizon cannot advance, so no dead tuple of the queue can be removed
//   active_readers  two REPEATABLE READ readers, staggered, each running a long query (a count
//                   over the system's job table, then pg_sleep for --reader-seconds) in a loop:
//                   the horizon is always a few seconds old
// Throughput = jobs completed during the measured window (after a 3 s warm-up) per second,
// counted in the database at the window's two ends (the same count for every system), reported
// as a share of the same system's clean cell; kept_up = completed / enqueued by the end of the
// cell (1.0: the worker kept up with whatever the producer achieved, so a lower share of clean
// is the producer's, i.e. the database's, slowdown, not the worker's); backlog = jobs enqueued
// but not completed at the end; dead tuples and size of the job tables at the end. Each cell starts from the same
// preparation (TRUNCATE, VACUUM ANALYZE, CHECKPOINT, asserted). Single-threaded (event loop).
"use strict";

const L = require("./lib");
const fair = require("./fair");

const READER_SECONDS = 8;
const WARMUP_MS = 3000;

async function doneCount(sys, sent) {
  return sys.name === "gw" ? sys.countDone(sent) : sys.countDone();
}

// Starts the cell's pressure against the system's database; returns a stop function.
async function startPressure(cluster, sys, cell) {
  if (cell === "clean") return async () => {};
  if (cell === "idle_in_tx") {
    const c = await cluster.connect(sys.db, "bench_harness");
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await c.query("SELECT txid_current()");
    return async () => {
      await c.query("ROLLBACK");
      await c.end();
    };
  }
  const table = sys.mainTable;
  let stopping = false;
  const readers = [];
  for (let i = 0; i < 2; ++i) {
    const c = await cluster.connect(sys.db, "bench_harness");
    readers.push((async () => {
      try {
        await L.sleep((i * READER_SECONDS * 1000) / 2);
        while (!stopping) {
          await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
          await c.query(`SELECT count(*) FROM ${table}`);
          await c.query("SELECT pg_sleep($1)", [READER_SECONDS]);
          await c.query("COMMIT");
        }
      } finally {
        await c.end().catch(() => {});
      }
    })().catch(() => {}));  // the cancel at the end of the cell ends the sleeping reader
  }
  return async () => {
    stopping = true;
    // Cancel the sleeping readers rather than wait for them.
    const a = await cluster.connect("postgres", "bench_harness");
    await a.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = 'bench_harness'
        AND query LIKE 'SELECT pg_sleep%'`, [sys.db]);
    await a.end();
    await Promise.allSettled(readers);
  };
}

async function cellOnce(cluster, sys, cfg, cell, P, F, opts, tag) {
  // The same preparation as a drain, with no jobs queued.
  const tPrep = L.nowMs();
  await sys.reset();
  await fair.statsStep(sys, F, opts);
  const prepSeconds = (L.nowMs() - tPrep) / 1000;
  const loadBefore = L.load1();
  const w = sys.worker(cfg.settings, tag);
  await w.ready();
  w.go();
  if (w.started) await w.started();
  await L.sleep(2000);
  const prod = await sys.producer();
  const stopPressure = await startPressure(cluster, sys, cell);
  let sent = 0;
  const total = Math.round(P.pressure_rate * P.pressure_seconds);
  let t0 = null;
  let d0 = null;
  const tStart = L.nowMs();
  const marker = (async () => {
    await L.sleep(WARMUP_MS);
    t0 = L.nowMs();
    d0 = await doneCount(sys, sent);
  })();
  // Batches of P.pressure_batch jobs, one statement (one commit) each, paced to the offered rate.
  const b = P.pressure_batch;
  // The cell lasts pressure_seconds whatever rate the producer reaches (a loaded machine may
  // not commit 800 single inserts per second: the achieved rate is recorded).
  const tStop = tStart + P.pressure_seconds * 1000;
  const s = await L.paced(P.pressure_rate / b, Math.round(total / b), async () => {
    if (b === 1) await prod.send();
    else await prod.sendBatch(b);
    sent += b;
  }, 2 * L.PRODUCER_POOL, () => L.nowMs() >= tStop);
  s.achieved_rate *= b;
  await marker;
  const t1 = L.nowMs();
  const d1 = await doneCount(sys, sent);
  const dead = (await sys.h.query(`SELECT coalesce(sum(n_dead_tup), 0)::float8 AS dead,
      coalesce(sum(pg_total_relation_size(relid)), 0)::float8 AS bytes FROM pg_stat_user_tables
      WHERE schemaname = ANY($1)`, [sys.schemas])).rows[0];
  await stopPressure();
  await w.stop();
  await prod.close();
  await fair.waitBackendsGone(sys);
  const x = {
    cell, round: null, offered_per_s: P.pressure_rate, achieved_enqueue_per_s: s.achieved_rate, enqueue_failed: s.failed,
    completed_per_s: (d1 - d0) / ((t1 - t0) / 1000), window_s: (t1 - t0) / 1000, backlog_end: sent - d1,
    kept_up: sent > 0 ? d1 / sent : null,
    dead_tuples_end: Number(dead.dead), schema_bytes_end: Number(dead.bytes), load_before: loadBefore, load_after: L.load1(),
    seconds: (t1 - tStart) / 1000,
  };
  x.prep_seconds = prepSeconds;
  x.cell_seconds = (L.nowMs() - tPrep) / 1000;
  L.log(`pressure ${tag}: ${L.fmt(x.completed_per_s)} jobs/s completed of ${L.fmt(x.achieved_enqueue_per_s)}/s enqueued, ` +
    `backlog ${x.backlog_end}, dead tuples ${x.dead_tuples_end} (cell ${x.cell_seconds.toFixed(0)} s, preparation ${prepSeconds.toFixed(1)} s)`);
  return x;
}

async function run(cluster, systems, P, F, opts, chosen) {
  const slots = P.pressure_slots;
  const cfgs = [
    { key: "ours_inproc", sys: "ours", settings: ["--isolation", "none", "--concurrency", String(slots)] },
    { key: "ours_default", sys: "ours", settings: ["--concurrency", String(slots)] },
  ];
  if (systems.gw) cfgs.push({ key: "gw", sys: "gw", settings: { ...chosen.gw.settings, concurrentJobs: slots, maxPoolSize: slots + 1 } });
  if (systems.boss) {
    cfgs.push({ key: "boss", sys: "boss", settings: { ctor: chosen.boss.settings.ctor,
      // 32 jobs in flight: 4 local workers fetching batches of 8 in burst mode (with batches of
      // 1, burst mode is off and each of 32 workers waits a poll interval between jobs).
      work: { ...chosen.boss.settings.work, batchSize: slots / 4, localConcurrency: 4 } } });
  }
  systems.ours.mainTable = "jr_jobs";
  if (systems.gw) systems.gw.mainTable = "graphile_worker._private_jobs";
  if (systems.boss) systems.boss.mainTable = `pgboss.${systems.boss.table}`;
  const cells = ["clean", "idle_in_tx", "active_readers"];
  const rounds = P.quick ? 1 : 2;
  const by = {};
  for (let r = 0; r < rounds; ++r) {
    const k = r % cfgs.length;
    for (const cfg of [...cfgs.slice(k), ...cfgs.slice(0, k)]) {
      for (const cell of cells) {
        const x = await cellOnce(cluster, systems[cfg.sys], cfg, cell, P, F, opts, `${cfg.key}-${cell}-r${r + 1}`);
        x.round = r + 1;
        (by[`${cfg.key}/${cell}`] ??= []).push(x);
      }
    }
  }
  const summary = {};
  for (const cfg of cfgs) {
    const s = { settings: cfg.settings };
    for (const cell of cells) {
      const xs = by[`${cfg.key}/${cell}`];
      s[cell] = { completed_per_s: L.summary(xs.map((x) => x.completed_per_s)), backlog_end: L.summary(xs.map((x) => x.backlog_end)),
        kept_up: L.summary(xs.map((x) => x.kept_up)),
        dead_tuples_end: L.summary(xs.map((x) => x.dead_tuples_end)), achieved_enqueue_per_s: L.summary(xs.map((x) => x.achieved_enqueue_per_s)),
        rounds: xs };
    }
    for (const cell of cells.slice(1)) {
      // Share of clean, per round (same round's clean cell), then the median.
      const shares = s[cell].rounds.map((x, i) => x.completed_per_s / s.clean.rounds[i].completed_per_s);
      s[cell].share_of_clean = L.summary(shares);
    }
    summary[cfg.key] = s;
  }
  return { offered_per_s: P.pressure_rate, batch: P.pressure_batch, slots, seconds: P.pressure_seconds, warmup_s: WARMUP_MS / 1000,
    reader_seconds: READER_SECONDS, rounds, cells, summary };
}

module.exports = { run };
