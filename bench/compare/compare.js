// bench/compare/compare.js: the side-by-side benchmark (run it through bench/compare/run). One
// throwaway PostgreSQL for all systems, one database each, one connection type for every client
// (--conn tcp|socket), the same preparation and clock for every drain (fair.js), interleaved
// rounds with rotated order, medians and ranges. Prints progress on stderr, then a table, then
// (the last line) one JSON object with every phase, the fairness assertions and the preparation.
// Phases run one after the other, so systems never compete with each other for the 2 cores.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const L = require("./lib");
const fair = require("./fair");
const gwm = require("./gw");
const bossm = require("./boss");
const { Ours } = require("./ours");
const limit = require("./limit");
const pressure = require("./pressure");
const handoff = require("./handoff");
const report = require("./report");

const PHASES = ["enqueue", "sweep", "drain", "limit", "latency", "pressure", "handoff", "scale"];

function parseArgs(argv) {
  const a = { quick: false, runner: null, echo: null, keep: false, only: null, noPeers: false, conn: "tcp",
    stats: "analyze", rounds: null, sweepRounds: null, jobs: null, probeMs: 20, pressureSeconds: null, out: null };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === "--quick") a.quick = true;
    else if (k === "--keep") a.keep = true;
    else if (k === "--no-peers") a.noPeers = true;  // ours only (quick iterations; no ratios)
    else if (k === "--runner") a.runner = val();
    else if (k === "--echo") a.echo = val();
    else if (k === "--only") a.only = val().split(",");
    else if (k === "--conn") a.conn = val();
    else if (k === "--stats") a.stats = val();
    else if (k === "--rounds") a.rounds = Number(val());
    else if (k === "--sweep-rounds") a.sweepRounds = Number(val());
    else if (k === "--jobs") a.jobs = Number(val());
    else if (k === "--probe-ms") a.probeMs = Number(val());
    else if (k === "--pressure-seconds") a.pressureSeconds = Number(val());
    else if (k === "--pressure-batch") a.pressureBatch = Number(val());
    else if (k === "--out") a.out = val();
    else throw new Error(`unknown argument ${k} (see bench/compare/run --help)`);
  }
  if (!["tcp", "socket"].includes(a.conn)) throw new Error("--conn must be tcp or socket");
  if (!["analyze", "none"].includes(a.stats)) throw new Error("--stats must be analyze or none");
  if (a.only) for (const p of a.only) if (!PHASES.includes(p)) throw new Error(`unknown phase ${p} (${PHASES.join(", ")})`);
  return a;
}

// Our configurations. No flags at all = the runner's defaults (sandboxed).
const NONE = ["--isolation", "none"];
function oursSweep(quick) {
  const inproc = quick
    ? [[], ["--concurrency", "50", "--prefetch", "1000"], ["--concurrency", "50", "--prefetch", "2000"]]
    : [[], ["--concurrency", "25", "--prefetch", "1000"], ["--concurrency", "50", "--prefetch", "1000"],
      ["--concurrency", "50", "--prefetch", "2000"], ["--concurrency", "50", "--prefetch", "2000", "--fetch-batch", "500"]];
  const sandboxed = quick
    ? [["--concurrency", "50", "--prefetch", "1000"]]
    : [["--concurrency", "25", "--prefetch", "1000"], ["--concurrency", "50", "--prefetch", "1000"]];
  const key = (pre, a) => `${pre}${a.length ? "_" + a.filter((x, i) => i % 2 === 1).join("_") : "_defaults"}`;
  return [
    ...inproc.map((a) => ({ key: key("ours_inproc", a), sys: "ours", group: "ours_inproc", settings: [...NONE, ...a],
      label: `ours ${[...NONE, ...a].join(" ")}` })),
    { key: "ours_default", sys: "ours", group: "ours_sandboxed", settings: [], label: "ours, no flags (sandboxed, the default)" },
    ...sandboxed.map((a) => ({ key: key("ours_sandbox", a), sys: "ours", group: "ours_sandboxed", settings: ["--isolation", "sandbox", ...a],
      label: `ours --isolation sandbox ${a.join(" ")}` })),
  ];
}

function best(summary, group) {
  const xs = Object.values(summary).filter((x) => x.group === group);
  return xs.reduce((b, x) => (x.jobs_per_s.median > b.jobs_per_s.median ? x : b));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const root = path.resolve(L.HERE, "..", "..");
  const runner = path.resolve(args.runner || path.join(root, "build", "release", "runner"));
  const echo = path.resolve(args.echo || path.join(root, "build", "release", "plugins", "libjr_echo.so"));
  for (const f of [runner, echo]) if (!fs.existsSync(f)) throw new Error(`${f} not found: build the release preset or pass --runner/--echo`);
  const q = args.quick;
  const P = {
    quick: q,
    conn: args.conn,
    stats: args.stats,
    probe_ms: args.probeMs,
    jobs: args.jobs || (q ? 50000 : 200000),
    rounds: args.rounds || (q ? 3 : 5),
    sweep_rounds: args.sweepRounds || (q ? 1 : 2),
    latency_seconds: q ? 5 : 15,
    latency_rate: 500,
    pressure_seconds: args.pressureSeconds || (q ? 20 : 90),
    pressure_rate: 800,
    pressure_slots: 32,
    pressure_batch: args.pressureBatch || 1,
    scale_small: 10000,
    scale_big: q ? 300000 : 1000000,
    singles: q ? 1000 : 3000,
  };
  const want = (phase) => !args.only || args.only.includes(phase);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "jr-compare-"));
  fs.chmodSync(work, 0o755);  // as root the cluster runs as an unprivileged user
  const R = { params: P, started: new Date().toISOString(), load_start: L.loadAvg(), phases: {} };
  const opts = { stats: P.stats, probeMs: P.probe_ms, maxSeconds: 600 };
  R.preparation = {
    cluster: `one throwaway PostgreSQL for every system (initdb, fsync on, synchronous_commit on, shared_buffers 128MB, ` +
      `max_connections 200, pg_stat_statements preloaded), one database per system`,
    connection: P.conn === "tcp" ? "TCP loopback (127.0.0.1) for every client, no unix socket used"
      : "unix socket for every client, no TCP listener",
    per_drain: [
      "TRUNCATE the system's job tables",
      `bulk enqueue ${P.jobs} no-op jobs (ours: runner enqueue --payload-file, COPY; graphile-worker: addJobs; pg-boss: insert; chunks of 10,000)`,
      "count the queued jobs (must equal the job count)",
      P.stats === "analyze" ? "VACUUM ANALYZE every table of the system's schema" : "no VACUUM, no ANALYZE (--stats none) for any system",
      "CHECKPOINT",
      P.stats === "analyze" ? "assert pg_stat_user_tables.last_vacuum and last_analyze of every one of those tables are after the preparation started"
        : "assert no manual ANALYZE ran on any of those tables",
      "reset pg_stat_statements for the system's database; note the WAL position and table I/O counters",
      "start the worker (our runner: exec; a peer: run()/start() in its own Node process after its module is loaded) and start the clock",
      `probe the job table every ${P.probe_ms} ms (primary key or live-state index, LIMIT 1) for an unfinished job; the clock stops at the midpoint between the last probe that saw one and the first that saw none`,
      "assert every backend of the system used the run's connection type (pg_stat_activity.client_addr) and that all jobs completed",
    ],
    order: `interleaved: round r runs the configurations rotated by r; ${P.rounds} rounds in the main drain, ${P.sweep_rounds} in the sweep; medians and ranges, never best runs`,
  };
  L.log(`work dir ${work}; runner ${runner}; connection ${P.conn}; statistics step ${P.stats}`);
  for (const s of R.preparation.per_drain) L.log(`  preparation: ${s}`);
  L.log(`  ${R.preparation.order}`);

  const cluster = new L.Cluster(work, P.conn);
  // Whatever goes wrong, leave no worker and no server behind.
  const die = (e) => {
    process.stderr.write(`compare: ${e && e.stack ? e.stack : e}\n`);
    L.killAll();
    cluster.stop();
    if (!args.keep) fs.rmSync(work, { recursive: true, force: true });
    process.exit(1);
  };
  process.on("uncaughtException", die);
  process.on("unhandledRejection", die);
  await cluster.start();
  const systems = {};
  try {
    const admin = await cluster.connect("postgres");
    await admin.query("CREATE ROLE bench_harness LOGIN SUPERUSER");
    await admin.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    R.machine = {
      cpus: os.cpus().length, cpu: os.cpus()[0].model, mem_gb: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(), node: process.version,
      postgres: await L.q1(admin, "SHOW server_version"),
      fsync: await L.q1(admin, "SHOW fsync"),
      synchronous_commit: await L.q1(admin, "SHOW synchronous_commit"),
      shared_buffers: await L.q1(admin, "SHOW shared_buffers"),
      runner: (L.run(runner, ["--version"]).stdout || "").trim(),
      runner_commit: (L.run("git", ["-C", root, "rev-parse", "--short", "HEAD"]).stdout || "").trim(),
      graphile_worker: require(path.join(L.PEERS, "graphile-worker", "package.json")).version,
      pg_boss: require(path.join(L.PEERS, "pg-boss", "package.json")).version,
    };
    await admin.end();

    const ours = new Ours(cluster, runner, echo, work);
    systems.ours = ours;
    await ours.setup();
    if (!args.noPeers) {
      systems.gw = new gwm.Gw(cluster, work);
      systems.boss = new bossm.Boss(cluster, work);
      await systems.gw.setup();
      await systems.boss.setup();
    }
    for (const s of Object.values(systems)) s.probe = await cluster.connect(s.db, "bench_harness");
    await admin0Extension(cluster, Object.values(systems));
    const F = new fair.Fairness(cluster, P.stats);
    for (const s of Object.values(systems)) {
      for (const cs of s.connectionStrings()) {
        F.check("every system's connection string uses the run's connection type", cluster.usesConnType(cs), `${s.name}: ${cs}`);
      }
    }
    R.connection_strings = Object.fromEntries(Object.values(systems).map((s) => [s.name, s.connectionStrings()]));
    L.log(`connection strings: ${JSON.stringify(R.connection_strings)}`);

    if (want("enqueue")) {
      L.log("enqueue");
      R.phases.enqueue = await enqueuePhase(systems, P);
    }

    // Each system's best settings from a small interleaved sweep, reported in full.
    const sweepCfgs = [...oursSweep(q)];
    if (!args.noPeers) {
      sweepCfgs.push(...gwm.SWEEP.slice(0, q ? 2 : 3).map((c) => ({ ...c, sys: "gw", group: "gw" })));
      sweepCfgs.push(...bossm.SWEEP.slice(0, q ? 2 : 3).map((c) => ({ ...c, sys: "boss", group: "boss" })));
    }
    let chosen = {
      ours_inproc: { settings: [...NONE, "--concurrency", "50", "--prefetch", "2000"] },
      gw: { settings: gwm.DOC_BEST, key: gwm.SWEEP[0].key },
      boss: { settings: bossm.SWEEP[0].settings, key: bossm.SWEEP[0].key },
    };
    if (want("sweep")) {
      L.log(`sweep: ${sweepCfgs.length} configurations x ${P.sweep_rounds} round(s), ${P.jobs} jobs each`);
      const sw = await fair.interleaved(cluster, systems, sweepCfgs, P.sweep_rounds, P.jobs, F, opts, "sweep");
      for (const c of sweepCfgs) sw.summary[c.key].group = c.group;
      chosen = { ours_inproc: best(sw.summary, "ours_inproc"), ours_sandboxed: best(sw.summary, "ours_sandboxed") };
      if (!args.noPeers) {
        chosen.gw = best(sw.summary, "gw");
        chosen.boss = best(sw.summary, "boss");
      }
      sw.chosen = Object.fromEntries(Object.entries(chosen).map(([g, x]) => [g, x.key]));
      R.phases.sweep = sw;
      L.log(`sweep chose ${JSON.stringify(sw.chosen)}`);
    }
    const inprocFlags = chosen.ours_inproc.settings.filter((x, i, a) => x !== "--isolation" && a[i - 1] !== "--isolation");

    if (want("drain")) {
      const cfgs = [
        { key: "ours_default", sys: "ours", settings: [], label: "ours, no flags (sandboxed, the default)" },
        { key: "ours_inproc_best", sys: "ours", settings: [...NONE, ...inprocFlags], label: `ours ${[...NONE, ...inprocFlags].join(" ")}` },
        { key: "ours_sandboxed_same", sys: "ours", settings: ["--isolation", "sandbox", ...inprocFlags],
          label: `ours ${["--isolation", "sandbox", ...inprocFlags].join(" ")}` },
      ];
      if (!args.noPeers) {
        cfgs.push({ key: "gw_best", sys: "gw", settings: chosen.gw.settings, label: `graphile-worker ${chosen.gw.key}` });
        cfgs.push({ key: "boss_best", sys: "boss", settings: chosen.boss.settings, label: `pg-boss ${chosen.boss.key}` });
      }
      L.log(`drain: ${cfgs.length} configurations x ${P.rounds} rounds, ${P.jobs} jobs each`);
      const d = await fair.interleaved(cluster, systems, cfgs, P.rounds, P.jobs, F, opts, "drain");
      d.ratios = {
        default_vs_gw_best: fair.pairedRatio(d, "ours_default", "gw_best"),
        inproc_best_vs_gw_best: fair.pairedRatio(d, "ours_inproc_best", "gw_best"),
        inproc_best_vs_boss_best: fair.pairedRatio(d, "ours_inproc_best", "boss_best"),
        default_vs_boss_best: fair.pairedRatio(d, "ours_default", "boss_best"),
        sandboxed_vs_inproc_same_flags: fair.pairedRatio(d, "ours_sandboxed_same", "ours_inproc_best"),
      };
      R.phases.drain = d;
    }

    if (want("limit")) {
      L.log("physical limit (pgbench floors, measured like the drains)");
      R.phases.limit = await limit.limits(cluster, systems, P, F, opts, work);
    }

    if (want("latency")) {
      L.log("latency");
      R.phases.latency = await latencyPhase(systems, P, chosen, inprocFlags);
    }

    if (want("pressure")) {
      L.log("MVCC pressure");
      R.phases.pressure = await pressure.run(cluster, systems, P, F, opts, chosen);
    }

    if (want("handoff")) {
      L.log("lock-key and dependency handoff");
      R.phases.handoff = await handoff.run(systems.ours, P);
    }

    if (want("scale")) {
      L.log("scale (ours: claim cost with a big queue)");
      const cfg = { key: "ours_inproc_best", sys: "ours", settings: [...NONE, ...inprocFlags] };
      const s = { args: cfg.settings.join(" ") };
      s.small = await fair.drainOnce(cluster, ours, cfg, P.scale_small, F, opts, "scale-small");
      s.small.db_rate = await ours.dbRate();
      s.big = await fair.drainOnce(cluster, ours, cfg, P.scale_big, F, opts, "scale-big");
      s.big.db_rate = await ours.dbRate();
      s.big_vs_small = s.big.db_rate / s.small.db_rate;
      R.phases.scale = s;
      L.log(`scale: ${L.fmt(s.small.db_rate)} jobs/s with ${P.scale_small} queued, ${L.fmt(s.big.db_rate)} with ${P.scale_big} ` +
        `(first claim to last completion, database clock)`);
    }
    R.fairness = { assertions: F.summary(), all_passed: F.summary().every((x) => x.failed === 0) };
  } catch (e) {
    if (e instanceof fair.FairnessError) {
      process.stderr.write(`compare: ABORTED: ${e.message}\n`);
      process.exitCode = 3;
    }
    throw e;
  } finally {
    L.killAll();
    for (const s of Object.values(systems)) {
      if (s.probe) await s.probe.end().catch(() => {});
      await s.close().catch(() => {});
    }
    cluster.stop();
    if (!args.keep) fs.rmSync(work, { recursive: true, force: true });
    else L.log(`kept ${work}`);
  }
  R.load_end = L.loadAvg();
  R.finished = new Date().toISOString();
  const out = args.out || path.join(L.HERE, ".peers", `last-${q ? "quick" : "full"}.json`);
  fs.writeFileSync(out, JSON.stringify(R, null, 1));
  L.log(`results in ${out}`);
  report.print(R);
}

// pg_stat_statements must exist in every system's database to be read there.
async function admin0Extension(cluster, systems) {
  for (const s of systems) await s.h.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
}

// Bulk enqueue (interleaved rounds, medians) and single enqueue (one statement per job).
async function enqueuePhase(systems, P) {
  const names = Object.keys(systems);
  const rounds = P.quick ? 2 : 3;
  const bulk = Object.fromEntries(names.map((n) => [n, []]));
  const store = [];
  for (let r = 0; r < rounds; ++r) {
    const k = r % names.length;
    for (const n of [...names.slice(k), ...names.slice(0, k)]) {
      await systems[n].reset();
      const x = await systems[n].enqueue(P.jobs);
      bulk[n].push(x.jobs_per_s);
      if (x.store_jobs_per_s) store.push(x.store_jobs_per_s);
    }
  }
  const single = {};
  for (const n of names) {
    await systems[n].reset();
    const p = await systems[n].producer();
    const t = L.nowMs();
    for (let i = 0; i < P.singles; ++i) await p.send();
    single[n] = P.singles / ((L.nowMs() - t) / 1000);
    await p.close();
    await systems[n].reset();
  }
  const e = { rounds, jobs: P.jobs, load: L.loadAvg(),
    bulk: Object.fromEntries(names.map((n) => [n, L.summary(bulk[n])])), ours_store_call: L.summary(store), single };
  L.log(`enqueue bulk medians: ${names.map((n) => `${n} ${L.fmt(e.bulk[n].median)}`).join(", ")}; single: ${names.map((n) => `${n} ${L.fmt(single[n])}`).join(", ")}`);
  return e;
}

// Steady 500 jobs/s; enqueue-to-start latency from the moment the enqueue call returned
// (committed) to the start: ours the claim (started_at, database clock), the peers the handler
// call (their process). Each worker gets the same 2 s to settle before the load starts.
async function latencyPhase(systems, P, chosen, inprocFlags) {
  const cfgs = [
    { key: "ours_default", sys: "ours", settings: [] },
    { key: "ours_inproc", sys: "ours", settings: [...NONE] },
  ];
  if (systems.gw) cfgs.push({ key: "gw_best", sys: "gw", settings: chosen.gw.settings });
  if (systems.boss) cfgs.push({ key: "boss_best", sys: "boss", settings: chosen.boss.settings });
  const rounds = P.quick ? 1 : 3;
  const by = Object.fromEntries(cfgs.map((c) => [c.key, []]));
  for (let r = 0; r < rounds; ++r) {
    const k = r % cfgs.length;
    for (const cfg of [...cfgs.slice(k), ...cfgs.slice(0, k)]) {
      const sys = systems[cfg.sys];
      await sys.reset();
      const loadBefore = L.load1();
      const w = sys.worker(cfg.settings, `latency-${cfg.key}-r${r + 1}`, true);
      await w.ready();
      w.go();
      if (w.started) await w.started();
      await L.sleep(2000);
      const prod = await sys.producer();
      const committed = new Map();
      const called = new Map();
      const total = Math.round(P.latency_rate * P.latency_seconds);
      const sent = await L.paced(P.latency_rate, total, async () => {
        const t = L.nowMs();
        const id = await prod.send();
        called.set(id, t);
        committed.set(id, L.nowMs());
      }, 2 * L.PRODUCER_POOL);
      const deadline = L.nowMs() + 30000;
      while (L.nowMs() < deadline && (await sys.probe.query(sys.unfinishedSql)).rows.length > 0) await L.sleep(50);
      const out = await w.stop();
      await prod.close();
      const starts = cfg.sys === "ours" ? (await sys.startTimes()).map((x) => [x.id, x.start]) : (out ? out.starts : []);
      const fromCommit = [];
      const fromCall = [];
      for (const [id, s] of starts) {
        if (committed.has(id)) fromCommit.push(s - committed.get(id));
        if (called.has(id)) fromCall.push(s - called.get(id));
      }
      fromCommit.sort((a, b) => a - b);
      fromCall.sort((a, b) => a - b);
      const x = { round: r + 1, load_before: loadBefore, load_after: L.load1(), n: fromCommit.length, sent: total, ...sent,
        p50_ms: L.percentile(fromCommit, 0.5), p99_ms: L.percentile(fromCommit, 0.99), max_ms: fromCommit[fromCommit.length - 1] ?? null,
        call_p50_ms: L.percentile(fromCall, 0.5), call_p99_ms: L.percentile(fromCall, 0.99) };
      by[cfg.key].push(x);
      L.log(`latency ${cfg.key} round ${r + 1}: p50 ${L.fmt(x.p50_ms, 2)} ms, p99 ${L.fmt(x.p99_ms, 2)} ms from commit ` +
        `(${x.n} jobs, ${L.fmt(x.achieved_rate)}/s achieved; from the call p50 ${L.fmt(x.call_p50_ms, 2)} / p99 ${L.fmt(x.call_p99_ms, 2)})`);
    }
  }
  const summary = {};
  for (const c of cfgs) {
    const xs = by[c.key];
    summary[c.key] = { settings: c.settings, p50_ms: L.summary(xs.map((x) => x.p50_ms)), p99_ms: L.summary(xs.map((x) => x.p99_ms)),
      call_p50_ms: L.summary(xs.map((x) => x.call_p50_ms)), call_p99_ms: L.summary(xs.map((x) => x.call_p99_ms)),
      achieved_rate: L.summary(xs.map((x) => x.achieved_rate)), rounds: xs };
  }
  return { rate: P.latency_rate, seconds: P.latency_seconds, rounds, summary };
}

main().then(() => process.exit(process.exitCode || 0), (e) => {
  process.stderr.write(`compare: ${e.stack || e}\n`);
  process.exit(process.exitCode || 1);
});
