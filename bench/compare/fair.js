// bench/compare/fair.js: the fair drain. Every system gets exactly the same preparation and the
// same clock, and the harness asserts both before and after every drain (a violated assertion
// throws FairnessError, which aborts the run):
//   preparation: TRUNCATE the system's job tables; bulk-enqueue N no-op jobs; count them (must
//     be N); VACUUM ANALYZE every table of the system's schema (or none, for every system, with
//     --stats none); CHECKPOINT; assert pg_stat_user_tables.last_vacuum/last_analyze of every
//     one of those tables is later than the preparation's start (or, with none, that no manual
//     ANALYZE ran); reset pg_stat_statements for the system's database.
//   clock: from worker start (our runner: exec; a peer: run()/start() after its module is
//     loaded, in its own process) to the last job's completion as recorded in the database: a
//     probe from the harness every --probe-ms (the same interval for everyone) asks the
//     system's job table, through its primary key or live-state index, whether any unfinished
//     job is left; the end is the midpoint between the last probe that saw one and the first
//     that saw none (so the error is at most half the interval, the same for everyone).
//     Where a system records completion times (ours finished_at, pg-boss completed_on) the
//     result carries the database's last completion as a cross-check.
//   after: every one of the system's backends used the run's connection type (client_addr in
//     pg_stat_activity: NULL for a unix socket, 127.0.0.1 for TCP), and exactly N jobs completed.
// Each drain also records what it cost per job (the profile): statements, WAL bytes, blocks,
// CPU of the worker process(es), of the system's backends and of the rest of the server.
// Single-threaded (the event loop).
"use strict";

const L = require("./lib");

class FairnessError extends Error {}

class Fairness {
  constructor(cluster, stats) {
    this.cluster = cluster;
    this.stats = stats;
    this.checks = {};  // name -> { passed, failed, last }
  }
  check(name, ok, detail) {
    const c = (this.checks[name] ??= { passed: 0, failed: 0 });
    if (ok) ++c.passed;
    else ++c.failed;
    c.last = detail;
    if (!ok) throw new FairnessError(`fairness assertion failed: ${name}: ${detail}`);
  }
  summary() {
    return Object.entries(this.checks).map(([name, c]) => ({ name, passed: c.passed, failed: c.failed }));
  }
}

// The tables of a system's schema(s), as schema-qualified names (plain and partition leaves).
async function schemaTables(sys) {
  const r = await sys.h.query(`SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY($1) AND c.relkind = 'r' ORDER BY 1`, [sys.schemas]);
  return r.rows.map((x) => x.t);
}

async function prepare(sys, n, F, opts) {
  const t = L.nowMs();
  await sys.reset();
  const enq = await sys.enqueue(n);
  const queued = await sys.countQueued();
  F.check("same job count queued before every drain", queued === n, `${sys.name}: ${queued} queued, want ${n}`);
  const tables = await statsStep(sys, F, opts);
  return { enqueue_jobs_per_s: enq.jobs_per_s, enqueue_store_jobs_per_s: enq.store_jobs_per_s ?? null,
    tables, prep_seconds: (L.nowMs() - t) / 1000 };
}

// The statistics step after the enqueue, the same for every system: VACUUM ANALYZE of every
// table of its schema (or nothing, with --stats none), CHECKPOINT, and the assertion that it
// happened (pg_stat_user_tables of every one of those tables). Returns the number of tables.
async function statsStep(sys, F, opts) {
  const since = await L.q1(sys.h, "SELECT clock_timestamp()::text");
  const tables = sys.tables ??= await schemaTables(sys);
  if (opts.stats === "analyze") {
    for (const tb of tables) await sys.h.query(`VACUUM ANALYZE ${tb}`);
  }
  await sys.h.query("CHECKPOINT");
  const st = await sys.h.query(`SELECT quote_ident(schemaname) || '.' || quote_ident(relname) AS t,
        coalesce(last_vacuum >= $1::timestamptz, false) AS vac, coalesce(last_analyze >= $1::timestamptz, false) AS an
      FROM pg_stat_user_tables WHERE schemaname = ANY($2)`, [since, sys.schemas]);
  const seen = new Map(st.rows.map((x) => [x.t, x]));
  for (const tb of tables) {
    const s = seen.get(tb);
    if (opts.stats === "analyze") {
      F.check("VACUUM ANALYZE of every job table before every drain", Boolean(s && s.vac && s.an),
        `${sys.name}: ${tb} last_vacuum/last_analyze not after ${since}`);
    } else {
      F.check("no statistics step for any system (--stats none)", Boolean(s && !s.an), `${sys.name}: ${tb} was analyzed after ${since}`);
    }
  }
  return tables.length;
}

async function systemBackends(sys) {
  const r = await sys.h.query(`SELECT pid, client_addr::text AS addr FROM pg_stat_activity
      WHERE datname = $1 AND usename = 'postgres' AND backend_type = 'client backend'`, [sys.db]);
  return r.rows.map((x) => ({ pid: Number(x.pid), addr: x.addr }));
}

async function waitBackendsGone(sys, ms = 5000) {
  const deadline = L.nowMs() + ms;
  while (L.nowMs() < deadline && (await systemBackends(sys)).length > 0) await L.sleep(20);
}

// Requests sent to the server by the system's client sockets (TCP only): data segments and bytes
// from the kernel's per-socket counters (`ss -ti`), every process except the harness. A request
// (or a pipelined group of them) is one data segment: this is the round-trip count.
function clientSegments(cluster) {
  if (cluster.conn !== "tcp") return null;
  const r = L.run("ss", ["-tinpH", "state", "established", `( dport = :${cluster.port} )`]);
  if (r.code !== 0) return null;
  let segs = 0;
  let bytes = 0;
  let sockets = 0;
  for (const entry of r.stdout.split(/\n(?=\S)/)) {
    const pid = /pid=(\d+)/.exec(entry);
    if (!pid || Number(pid[1]) === process.pid) continue;
    const s = /data_segs_out:(\d+)/.exec(entry);
    const b = /bytes_sent:(\d+)/.exec(entry);
    segs += s ? Number(s[1]) : 0;
    bytes += b ? Number(b[1]) : 0;
    ++sockets;
  }
  return { segs, bytes, sockets };
}

async function statio(sys) {
  const r = await sys.h.query(`SELECT coalesce(sum(heap_blks_hit + heap_blks_read), 0)::float8 AS heap,
        coalesce(sum(coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0)), 0)::float8 AS idx
      FROM pg_statio_user_tables WHERE schemaname = ANY($1)`, [sys.schemas]);
  return { heap: Number(r.rows[0].heap), idx: Number(r.rows[0].idx) };
}

// pg_stat_statements of the system's own role in its database since the reset.
async function statements(sys, n) {
  const where = `dbid = (SELECT oid FROM pg_database WHERE datname = $1)
    AND userid = (SELECT oid FROM pg_roles WHERE rolname = 'postgres')`;
  const tot = (await sys.h.query(`SELECT coalesce(sum(calls), 0)::float8 AS calls,
        coalesce(sum(shared_blks_hit + shared_blks_read), 0)::float8 AS blks,
        coalesce(sum(shared_blks_dirtied), 0)::float8 AS dirtied, coalesce(sum(wal_bytes), 0)::float8 AS wal,
        coalesce(sum(wal_fpi), 0)::float8 AS fpi, coalesce(sum(total_exec_time), 0)::float8 AS ms
      FROM pg_stat_statements WHERE ${where}`, [sys.db])).rows[0];
  const top = (await sys.h.query(`SELECT calls::float8, total_exec_time::float8 AS ms, rows::float8,
        (shared_blks_hit + shared_blks_read)::float8 AS blks, wal_bytes::float8 AS wal,
        regexp_replace(left(query, 100), '\\s+', ' ', 'g') AS query
      FROM pg_stat_statements WHERE ${where} ORDER BY total_exec_time DESC LIMIT 6`, [sys.db])).rows;
  const per = (x) => Number(x) / n;
  return {
    statements_per_job: per(tot.calls),
    blocks_per_job: per(tot.blks),
    dirtied_per_job: per(tot.dirtied),
    stmt_wal_bytes_per_job: per(tot.wal),
    exec_us_per_job: (1000 * Number(tot.ms)) / n,
    top: top.map((x) => ({ calls_per_job: per(x.calls), us_per_job: (1000 * x.ms) / n, rows_per_call: x.calls ? x.rows / x.calls : 0,
      blocks_per_job: per(x.blks), wal_bytes_per_job: per(x.wal), query: x.query })),
  };
}

// One drain of N pre-enqueued jobs with one configuration. cfg: { key, sys, settings }.
async function drainOnce(cluster, sys, cfg, n, F, opts, tag) {
  const loadBefore = L.load1();
  const prep = await prepare(sys, n, F, opts);
  const dbOid = await L.q1(sys.h, "SELECT oid FROM pg_database WHERE datname = $1", [sys.db]);
  await sys.h.query("SELECT pg_stat_statements_reset(0, $1, 0)", [dbOid]);
  const io0 = await statio(sys);
  const lsn0 = await L.q1(sys.h, "SELECT pg_current_wal_lsn()::text");
  const w = sys.worker(cfg.settings, tag);
  await w.ready();
  const srv0 = cluster.serverCpu();
  const cpuStart = w.pid ? L.cpuMs(w.pid) : 0;
  const tGo = L.nowMs();
  w.go();
  const hook = opts.onStart ? opts.onStart(w, cfg) : null;
  const deadline = tGo + opts.maxSeconds * 1000;
  let prev = tGo;
  let tEnd = null;
  let window = null;
  let probes = 0;
  let probeMs = 0;
  let maxProbeGap = 0;
  let rssMax = 0;
  let kidsMax = 0;
  for (;;) {
    await L.sleep(opts.probeMs);
    if (w.exited()) throw new Error(w.why());
    const ts = L.nowMs();
    const r = await sys.probe.query(sys.unfinishedSql);
    maxProbeGap = Math.max(maxProbeGap, ts - prev);
    probeMs += L.nowMs() - ts;
    ++probes;
    if (probes % 25 === 1) {
      const pids = w.pids();
      rssMax = Math.max(rssMax, L.rssKb(pids[0]) ?? 0);
      kidsMax = Math.max(kidsMax, pids.length - 1);
    }
    if (r.rows.length === 0) {
      tEnd = (prev + ts) / 2;
      window = ts - prev;
      break;
    }
    if (ts > deadline) throw new Error(`${cfg.key}: not drained within ${opts.maxSeconds} s`);
    prev = ts;
  }
  // Costs, read while the worker and its connections are still alive.
  const backends = await systemBackends(sys);
  const want = cluster.conn === "tcp" ? "127.0.0.1" : null;
  const bad = backends.filter((b) => (b.addr === null ? null : b.addr.replace(/\/32$/, "")) !== want);
  F.check("every backend of every system used the run's connection type",
    backends.length > 0 && bad.length === 0,
    `${cfg.key}: ${backends.length} backends, client_addr ${JSON.stringify(bad.map((b) => b.addr))}, want ${want ?? "NULL (unix socket)"}`);
  const pids = w.pids();
  const mainCpu = (L.cpuMs(pids[0]) ?? 0) - (cpuStart ?? 0);
  const childCpu = pids.slice(1).reduce((s, p) => s + (L.cpuMs(p) ?? 0), 0);
  const workerCpu = mainCpu + childCpu;
  const bePids = new Set(backends.map((b) => b.pid));
  const backendCpu = backends.reduce((s, b) => s + (L.cpuMs(b.pid) ?? 0), 0);
  const srv1 = cluster.serverCpu();
  let otherCpu = 0;
  for (const [pid, c1] of srv1) {
    if (bePids.has(pid) || !srv0.has(pid) || c1 === null || srv0.get(pid) === null) continue;
    otherCpu += c1 - srv0.get(pid);
  }
  const net = clientSegments(cluster);
  const lsn1 = await L.q1(sys.h, "SELECT pg_current_wal_lsn()::text");
  const walBytes = Number(await L.q1(sys.h, "SELECT pg_wal_lsn_diff($1, $2)::float8", [lsn1, lsn0]));
  const st = await statements(sys, n);
  if (hook) await hook;
  await w.stop();
  await waitBackendsGone(sys);
  const io1 = await statio(sys);
  const done = await sys.countDone(n);
  F.check("every job of every drain completed", done === n, `${cfg.key}: ${done} completed of ${n}`);
  const dbLast = await sys.lastCompletionMs();
  const seconds = (tEnd - tGo) / 1000;
  return {
    key: cfg.key,
    jobs_per_s: n / seconds,
    seconds,
    n,
    load_before: loadBefore,
    load_after: L.load1(),
    clock: { end_window_ms: window, max_probe_gap_ms: maxProbeGap, probes, probe_mean_ms: probeMs / probes,
      db_last_completion_minus_probe_end_ms: dbLast === null ? null : dbLast - tEnd },
    prep,
    worker_processes_max: kidsMax + 1,
    rss_max_kb: rssMax,
    profile: {
      wal_bytes_per_job: walBytes / n,
      heap_blocks_per_job: (io1.heap - io0.heap) / n,
      index_blocks_per_job: (io1.idx - io0.idx) / n,
      cpu_us_per_job: { worker: (1000 * workerCpu) / n, worker_main: (1000 * mainCpu) / n, worker_children: (1000 * childCpu) / n,
        backends: (1000 * backendCpu) / n, server_other: (1000 * otherCpu) / n },
      backends: backends.length,
      round_trips_per_job: net ? net.segs / n : null,
      request_bytes_per_job: net ? net.bytes / n : null,
      ...st,
    },
  };
}

// Runs every configuration `rounds` times, interleaved: round r runs the list rotated by r
// (A B C, B C A, C A B, ...), so no system always goes first or last.
async function interleaved(cluster, systems, configs, rounds, n, F, opts, phase) {
  const by = Object.fromEntries(configs.map((c) => [c.key, []]));
  const orders = [];
  for (let r = 0; r < rounds; ++r) {
    const k = r % configs.length;
    const order = [...configs.slice(k), ...configs.slice(0, k)];
    orders.push(order.map((c) => c.key));
    for (const cfg of order) {
      const sys = systems[cfg.sys];
      const x = await drainOnce(cluster, sys, cfg, n, F, opts, `${phase}-${cfg.key}-r${r + 1}`);
      x.round = r + 1;
      by[cfg.key].push(x);
      L.log(`${phase} round ${r + 1}/${rounds} ${cfg.key}: ${L.fmt(x.jobs_per_s)} jobs/s (${x.seconds.toFixed(2)} s, ` +
        `load ${x.load_before}->${x.load_after}, ${x.profile.statements_per_job.toFixed(3)} statements/job, ` +
        `${x.profile.wal_bytes_per_job.toFixed(0)} WAL B/job, cpu us/job worker ${x.profile.cpu_us_per_job.worker.toFixed(1)} ` +
        `backends ${x.profile.cpu_us_per_job.backends.toFixed(1)})`);
    }
  }
  for (const c of configs) {
    F.check("same number of rounds for every configuration", by[c.key].length === rounds, `${c.key}: ${by[c.key].length} of ${rounds}`);
  }
  const summary = {};
  for (const c of configs) {
    const xs = by[c.key];
    summary[c.key] = {
      key: c.key, sys: c.sys, label: c.label, settings: c.settings,
      jobs_per_s: L.summary(xs.map((x) => x.jobs_per_s)),
      load: L.summary(xs.flatMap((x) => [x.load_before, x.load_after])),
      worker_processes_max: Math.max(...xs.map((x) => x.worker_processes_max)),
      rounds: xs.map((x) => ({ round: x.round, jobs_per_s: Math.round(x.jobs_per_s), seconds: Number(x.seconds.toFixed(3)),
        load_before: x.load_before, load_after: x.load_after, probe_window_ms: Number(x.clock.end_window_ms.toFixed(1)),
        probe_mean_ms: Number(x.clock.probe_mean_ms.toFixed(3)),
        db_end_minus_probe_end_ms: x.clock.db_last_completion_minus_probe_end_ms === null ? null
          : Number(x.clock.db_last_completion_minus_probe_end_ms.toFixed(1)),
        enqueue_jobs_per_s: Math.round(x.prep.enqueue_jobs_per_s) })),
      profile: profileSummary(xs),
    };
  }
  return { rounds, n, orders, summary };
}

// Medians over rounds of every per-job cost; the statement list of the median round.
function profileSummary(xs) {
  const m = (f) => L.median(xs.map(f));
  const byRate = [...xs].sort((a, b) => a.jobs_per_s - b.jobs_per_s);
  const mid = byRate[Math.floor((byRate.length - 1) / 2)];
  return {
    statements_per_job: m((x) => x.profile.statements_per_job),
    round_trips_per_job: m((x) => x.profile.round_trips_per_job),
    request_bytes_per_job: m((x) => x.profile.request_bytes_per_job),
    wal_bytes_per_job: m((x) => x.profile.wal_bytes_per_job),
    stmt_wal_bytes_per_job: m((x) => x.profile.stmt_wal_bytes_per_job),
    blocks_per_job: m((x) => x.profile.blocks_per_job),
    dirtied_per_job: m((x) => x.profile.dirtied_per_job),
    heap_blocks_per_job: m((x) => x.profile.heap_blocks_per_job),
    index_blocks_per_job: m((x) => x.profile.index_blocks_per_job),
    exec_us_per_job: m((x) => x.profile.exec_us_per_job),
    cpu_us_per_job: {
      worker: m((x) => x.profile.cpu_us_per_job.worker),
      worker_main: m((x) => x.profile.cpu_us_per_job.worker_main),
      worker_children: m((x) => x.profile.cpu_us_per_job.worker_children),
      backends: m((x) => x.profile.cpu_us_per_job.backends),
      server_other: m((x) => x.profile.cpu_us_per_job.server_other),
    },
    backends: m((x) => x.profile.backends),
    top: mid.profile.top,
  };
}

// Per-round ratios a/b of two configurations of the same interleaved phase, summarised.
function pairedRatio(phase, a, b) {
  const xa = phase.summary[a];
  const xb = phase.summary[b];
  if (!xa || !xb) return null;
  const ra = new Map(xa.rounds.map((x) => [x.round, x.jobs_per_s]));
  const rs = xb.rounds.filter((x) => ra.has(x.round)).map((x) => ra.get(x.round) / x.jobs_per_s);
  const s = L.summary(rs);
  s.of_medians = xa.jobs_per_s.median / xb.jobs_per_s.median;
  return s;
}

module.exports = { Fairness, FairnessError, drainOnce, interleaved, pairedRatio, prepare, statsStep, schemaTables, systemBackends, waitBackendsGone };
