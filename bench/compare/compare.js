// bench/compare/compare.js: the side-by-side benchmark (run it through bench/compare/run). One
// throwaway PostgreSQL (our `runner db start`, default durability), one database per system,
// the same no-op workloads; prints a table with ratios and, as the last line, one JSON object.
// Phases run one after the other, so systems never compete for the 2 cores.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const L = require("./lib");
const gw = require("./gw");
const boss = require("./boss");
const { Ours } = require("./ours");
const limit = require("./limit");
const report = require("./report");

function parseArgs(argv) {
  const a = { quick: false, runner: null, echo: null, keep: false, only: null, noPeers: false };
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    if (k === "--quick") a.quick = true;
    else if (k === "--keep") a.keep = true;
    else if (k === "--no-peers") a.noPeers = true;  // ours only (quick iterations)
    else if (k === "--runner") a.runner = argv[++i];
    else if (k === "--echo") a.echo = argv[++i];
    else if (k === "--only") a.only = argv[++i].split(",");
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

function runnerVersion(runner) {
  const r = L.run(runner, ["--version"]);
  return (r.stdout || r.stderr).trim();
}

// Does the runner execute plugins in sandboxed worker processes? `--isolation sandbox` must be
// accepted and the runner must have child processes while it works.
async function sandboxSupported(ours) {
  const help = L.run(ours.runner, ["--help"]).stdout;
  if (!/--isolation/.test(help)) return { supported: false, why: "runner has no --isolation option" };
  await ours.reset();
  ours.enqueueCli(2000);
  const child = ours.startRunner(["--isolation", "sandbox"], "sandbox-probe");
  let kids = 0;
  for (let i = 0; i < 30 && kids === 0 && child.exitCode === null; ++i) {
    await L.sleep(100);
    kids = L.childCount(child.pid);
  }
  await L.stop(child);
  return { supported: kids > 0, why: kids > 0 ? undefined : "no worker processes seen with --isolation sandbox" };
}

function bestArgs(R) {
  const d = R.phases.drain;
  if (!d || d.ours_best.args === "(defaults)") return [];
  return d.ours_best.args.split(" ");
}

const NONE = ["--isolation", "none"];
const SANDBOX = ["--isolation", "sandbox"];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const root = path.resolve(L.HERE, "..", "..");
  const runner = args.runner || path.join(root, "build", "compare-rel", "runner");
  const echo = args.echo || path.join(root, "build", "compare-rel", "plugins", "libjr_echo.so");
  const q = args.quick;
  const P = {
    drainJobs: q ? 50000 : 200000,
    singles: q ? 1000 : 3000,
    defaultsCap: q ? 15 : 30,
    latencySeconds: q ? 5 : 15,
    rate: 500,
    scaleBig: q ? 1000000 : 2000000,
    scaleSmall: 10000,
  };
  const want = (phase) => !args.only || args.only.includes(phase);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "jr-compare-"));
  fs.chmodSync(work, 0o755);  // as root the managed cluster runs as an unprivileged user
  const dataDir = path.join(work, "pg");
  const R = { params: P, started: new Date().toISOString(), load_start: L.loadAvg(), phases: {} };

  L.log(`work dir ${work}; runner ${runner}`);
  let r = L.run(runner, ["db", "start", "--data-dir", dataDir]);
  if (r.code !== 0) throw new Error(`runner db start failed: ${r.stderr}`);
  // The cluster's superuser: ALTER SYSTEM, pg_stat_statements, and one database per system.
  const url = L.run(runner, ["db", "url", "--superuser", "--data-dir", dataDir]).stdout.trim();
  // pg_stat_statements for the analysis (same small overhead for every system).
  const admin = await L.connect(url, "postgres");
  await admin.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'");
  await admin.end();
  L.run(runner, ["db", "stop", "--data-dir", dataDir]);
  r = L.run(runner, ["db", "start", "--data-dir", dataDir]);
  if (r.code !== 0) throw new Error(`runner db restart failed: ${r.stderr}`);

  const ours = new Ours(runner, echo, url, work);
  try {
    await ours.setup();
    await ours.db.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    R.machine = {
      cpus: os.cpus().length, cpu: os.cpus()[0].model, mem_gb: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(), node: process.version,
      postgres: await L.q1(ours.db, "SHOW server_version"),
      fsync: await L.q1(ours.db, "SHOW fsync"),
      synchronous_commit: await L.q1(ours.db, "SHOW synchronous_commit"),
      shared_buffers: await L.q1(ours.db, "SHOW shared_buffers"),
      runner: runnerVersion(runner),
      graphile_worker: require(path.join(L.PEERS, "graphile-worker", "package.json")).version,
      pg_boss: require(path.join(L.PEERS, "pg-boss", "package.json")).version,
    };
    const gwUtils = await gw.setup(url);
    await boss.setup(url);

    if (want("enqueue")) {
      L.log("enqueue");
      const e = {};
      await ours.reset();
      e.ours_bulk = ours.enqueueCli(P.drainJobs);
      e.ours_bulk_store_only = ours.lastStoreRate;
      e.ours_single = await ours.enqueueSingle(P.singles);
      await ours.reset();
      e.gw_bulk = await gw.enqueueBulk(gwUtils, P.drainJobs);
      await gwUtils.withPgClient((c) => c.query("DELETE FROM graphile_worker._private_jobs"));
      e.gw_single = await gw.enqueueSingle(gwUtils, P.singles);
      e.boss_bulk = await boss.bulk(url, P.drainJobs);
      e.boss_single = await boss.enqueueSingle(url, P.singles);
      e.load = L.loadAvg();
      R.phases.enqueue = e;
      L.log(JSON.stringify(e));
    }

    if (want("drain")) {
      L.log("drain");
      const d = { load: [] };
      const n = P.drainJobs;
      // Defaults, both isolations (always explicit: the default isolation is sandbox from the
      // version that has it): in-process is the comparison with the peers' in-process handlers.
      d.ours_defaults = await ours.drain(n, NONE, 600, "defaults");
      d.ours_defaults.top = await ours.topStatements();
      L.log(`ours defaults, in-process: ${L.fmt(d.ours_defaults.jobs_per_s)} jobs/s`);
      if ((await sandboxSupported(ours)).supported) {
        d.ours_defaults_sandboxed = await ours.drain(n, SANDBOX, 600, "defaults-sandboxed");
        d.ours_defaults_sandboxed.args = SANDBOX.join(" ");
        d.ours_defaults_sandboxed.top = await ours.topStatements();
        L.log(`ours defaults, sandboxed: ${L.fmt(d.ours_defaults_sandboxed.jobs_per_s)} jobs/s, ` +
          `${d.ours_defaults_sandboxed.children_max} worker processes`);
      }
      const sweep = q
        ? [[25, 500, 0], [50, 1000, 0], [50, 2000, 500]]
        : [[10, 500, 0], [25, 500, 0], [25, 2000, 0], [50, 1000, 0], [50, 2000, 0], [50, 2000, 500]];
      d.ours_sweep = [];
      for (const [c, pf, fb] of sweep) {
        const a = [...NONE, "--concurrency", String(c), "--prefetch", String(pf)];
        if (fb) a.push("--fetch-batch", String(fb));
        const x = await ours.drain(n, a, 600, `c${c}-p${pf}-f${fb}`);
        x.args = a.join(" ");
        x.top = await ours.topStatements();
        d.ours_sweep.push(x);
        L.log(`ours ${x.args}: ${L.fmt(x.jobs_per_s)} jobs/s, rss max ${x.rss_max_kb} kB`);
      }
      d.ours_defaults.args = NONE.join(" ");
      d.ours_best = [d.ours_defaults, ...d.ours_sweep].reduce((b, x) => (x.jobs_per_s > b.jobs_per_s ? x : b));
      d.load.push(L.loadAvg());
      if (!args.noPeers) {
      d.gw_best = await gw.drain(url, gwUtils, n, gw.BEST, 600);
      L.log(`graphile-worker best: ${L.fmt(d.gw_best.jobs_per_s)} jobs/s`);
      d.gw_defaults = await gw.drain(url, gwUtils, Math.min(n, 50000), {}, P.defaultsCap);
      L.log(`graphile-worker defaults: ${L.fmt(d.gw_defaults.jobs_per_s)} jobs/s`);
      d.boss_best = await boss.drain(url, n, boss.BEST, 600, "best");
      L.log(`pg-boss best: ${L.fmt(d.boss_best.jobs_per_s)} jobs/s`);
      d.boss_defaults = await boss.drain(url, Math.min(n, 5000), boss.DEFAULTS, P.defaultsCap, "defaults");
      L.log(`pg-boss defaults: ${L.fmt(d.boss_defaults.jobs_per_s)} jobs/s`);
      }
      d.load.push(L.loadAvg());
      R.phases.drain = d;
    }

    if (want("sandbox")) {
      // The same drain with the plugin in sandboxed worker processes, back to back with the
      // in-process run of the same settings (best in-process settings, then defaults), plus a
      // short sweep for the sandbox's own best.
      L.log("sandboxed vs in-process");
      const s = await sandboxSupported(ours);
      if (s.supported) {
        const best = bestArgs(R).filter((x, i, a) => x !== "--isolation" && a[i - 1] !== "--isolation");
        s.args = best.join(" ");
        s.in_process = await ours.drain(P.drainJobs, [...NONE, ...best], 600, "inproc");
        s.sandboxed = await ours.drain(P.drainJobs, [...SANDBOX, ...best], 600, "sandboxed");
        s.sandboxed.top = await ours.topStatements();
        L.log(`in-process ${L.fmt(s.in_process.jobs_per_s)} jobs/s, sandboxed ${L.fmt(s.sandboxed.jobs_per_s)} jobs/s ` +
          `(${s.args || "defaults"}; ${s.sandboxed.children_max} worker processes)`);
        s.sweep = [];
        for (const [c, pf] of [[25, 500], [50, 1000], [100, 2000]]) {
          const a = [...SANDBOX, "--concurrency", String(c), "--prefetch", String(pf)];
          const x = await ours.drain(P.drainJobs, a, 600, `sandboxed-c${c}-p${pf}`);
          x.args = a.join(" ");
          s.sweep.push(x);
          L.log(`sandboxed ${x.args}: ${L.fmt(x.jobs_per_s)} jobs/s, ${x.children_max} worker processes`);
        }
        const cands = [{ ...s.sandboxed, args: [...SANDBOX, ...best].join(" ") }, ...s.sweep];
        if (R.phases.drain && R.phases.drain.ours_defaults_sandboxed) cands.push(R.phases.drain.ours_defaults_sandboxed);
        s.sandboxed_best = cands.reduce((b, x) => (x.jobs_per_s > b.jobs_per_s ? x : b));
      }
      s.load = L.loadAvg();
      R.phases.sandbox = s;
    }

    if (want("latency")) {
      L.log("latency");
      const l = {};
      l.ours = await ours.latency(P.rate, P.latencySeconds, NONE);
      if (!R.phases.sandbox || R.phases.sandbox.supported) {
        l.ours_sandboxed = await ours.latency(P.rate, P.latencySeconds, SANDBOX, "latency-sandboxed");
      }
      if (!args.noPeers) {
        l.gw = await gw.latency(url, gwUtils, P.rate, P.latencySeconds, gw.BEST);
        l.boss = await boss.latency(url, P.rate, P.latencySeconds, boss.BEST);
      }
      l.load = L.loadAvg();
      R.phases.latency = l;
      L.log(JSON.stringify(l));
    }

    if (want("scale")) {
      L.log("scale");
      const s = {};
      const a = bestArgs(R);
      s.args = a.join(" ");
      await ours.reset();
      ours.enqueueCli(P.scaleSmall);
      s.small = await ours.drainQueued(P.scaleSmall, a, 120, "scale-small");
      await ours.reset();
      s.big_enqueue_jobs_per_s = ours.enqueueMany(P.scaleBig);
      await ours.db.query("VACUUM ANALYZE jr_jobs");
      s.big = await ours.drainQueued(P.scaleBig, a, q ? 10 : 15, "scale-big");
      s.big.top = await ours.topStatements();
      s.load = L.loadAvg();
      R.phases.scale = s;
      L.log(`scale: ${L.fmt(s.small.jobs_per_s)} jobs/s with ${P.scaleSmall} queued, ${L.fmt(s.big.jobs_per_s)} with ${P.scaleBig}`);
    }

    if (want("limit")) {
      L.log("raw SQL limit (pgbench)");
      R.phases.limit = await limit.limits(ours, q);
      R.phases.limit.load = L.loadAvg();
    }
  } finally {
    await ours.close();
    L.run(runner, ["db", "stop", "--data-dir", dataDir]);
    if (!args.keep) fs.rmSync(work, { recursive: true, force: true });
  }
  R.load_end = L.loadAvg();
  R.finished = new Date().toISOString();
  fs.writeFileSync(path.join(L.HERE, ".peers", `last-${q ? "quick" : "full"}.json`), JSON.stringify(R, null, 1));
  report.print(R);
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`compare: ${e.stack || e}\n`);
  process.exit(1);
});
