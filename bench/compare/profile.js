// bench/compare/profile.js: the evidence behind docs/performance.md's profile, beyond the per-job
// costs every drain of compare.js records (run it through `bench/compare/run --profile
// [--conn tcp|socket] [--jobs N]`). On a throwaway cluster prepared as fair.js prepares it:
//   - drains N jobs with our runner in-process (best flags) and with no flags (sandboxed) while
//     `perf record` samples the runner (and its workers) for 3 s; prints the hottest symbols
//   - drains the same N jobs with graphile-worker's documented best, for the per-job costs side
//     by side (statements, round trips, WAL, blocks, CPU per process)
//   - EXPLAIN (ANALYZE, BUFFERS) of the runner's own claim and completion statements (taken from
//     host/ at HEAD) with 10,000 queued, next to the minimal claim of limit.js
// Single-threaded (the event loop); perf and psql run as child processes.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const L = require("./lib");
const fair = require("./fair");
const { Ours } = require("./ours");
const gwm = require("./gw");

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

const NONE = ["--isolation", "none"];

async function main() {
  const root = path.resolve(L.HERE, "..", "..");
  const runner = path.resolve(arg("--runner", path.join(root, "build", "release", "runner")));
  const echo = path.resolve(arg("--echo", path.join(root, "build", "release", "plugins", "libjr_echo.so")));
  const n = Number(arg("--jobs", 100000));
  const conn = arg("--conn", "tcp");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "jr-profile-"));
  fs.chmodSync(work, 0o755);
  const cluster = new L.Cluster(work, conn);
  await cluster.start();
  const systems = {};
  try {
    const admin = await cluster.connect("postgres");
    await admin.query("CREATE ROLE bench_harness LOGIN SUPERUSER");
    await admin.end();
    systems.ours = new Ours(cluster, runner, echo, work);
    systems.gw = new gwm.Gw(cluster, work);
    for (const s of Object.values(systems)) {
      await s.setup();
      await s.h.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      s.probe = await cluster.connect(s.db, "bench_harness");
    }
    const F = new fair.Fairness(cluster, "analyze");
    console.log(`load ${L.loadAvg()}; ${n} jobs per drain; connection ${conn}`);
    const cfgs = [
      { key: "ours_inproc", sys: "ours", settings: [...NONE, "--concurrency", "50", "--prefetch", "2000"] },
      { key: "ours_default", sys: "ours", settings: [] },
      { key: "gw_best", sys: "gw", settings: gwm.DOC_BEST },
    ];
    for (const cfg of cfgs) {
      const perfData = path.join(work, `perf-${cfg.key}.data`);
      const opts = { stats: "analyze", probeMs: 20, maxSeconds: 600 };
      if (cfg.sys === "ours") {
        opts.onStart = async (w) => {
          await L.sleep(300);
          // -a would sample everyone's builds on this shared machine: the runner and its
          // workers only (their pids at this moment).
          const pids = w.pids().join(",");
          const perf = L.start("perf", ["record", "-F", "499", "-g", "-p", pids, "-o", perfData, "--", "sleep", "3"],
            {}, path.join(work, "perf.log"));
          await perf.exited;
        };
      }
      const x = await fair.drainOnce(cluster, systems[cfg.sys], cfg, n, F, opts, `profile-${cfg.key}`);
      const p = x.profile;
      console.log(`\n== ${cfg.key} (${Array.isArray(cfg.settings) ? cfg.settings.join(" ") || "no flags" : JSON.stringify(cfg.settings)}): ` +
        `${L.fmt(x.jobs_per_s)} jobs/s, load ${x.load_before}->${x.load_after}`);
      console.log(`   per job: ${p.statements_per_job.toFixed(4)} statements, ${p.round_trips_per_job === null ? "n/a" : p.round_trips_per_job.toFixed(4)} round trips, ` +
        `${p.wal_bytes_per_job.toFixed(0)} WAL bytes, ${p.blocks_per_job.toFixed(1)} blocks (heap ${p.heap_blocks_per_job.toFixed(1)}, index ${p.index_blocks_per_job.toFixed(1)}), ` +
        `CPU us: worker ${p.cpu_us_per_job.worker_main.toFixed(1)} + children ${p.cpu_us_per_job.worker_children.toFixed(1)}, backends ${p.cpu_us_per_job.backends.toFixed(1)}, other server ${p.cpu_us_per_job.server_other.toFixed(1)}`);
      console.table(p.top.map((t) => ({ calls_per_job: t.calls_per_job.toFixed(4), us_per_job: t.us_per_job.toFixed(2),
        rows_per_call: t.rows_per_call.toFixed(0), blocks_per_job: t.blocks_per_job.toFixed(2), wal_per_job: t.wal_bytes_per_job.toFixed(0),
        query: t.query.slice(0, 60) })));
      if (fs.existsSync(perfData)) {
        const rep = L.run("perf", ["report", "-i", perfData, "--no-children", "--sort", "comm,dso,sym", "--stdio", "-g", "none",
          "--percent-limit", "2"]);
        console.log(rep.stdout.split("\n").filter((l) => l && !l.startsWith("#")).slice(0, 25).join("\n"));
      }
    }
    // EXPLAIN of the runner's statements against the minimal claim, 10,000 queued.
    const ours = systems.ours;
    await ours.reset();
    ours.enqueue(10000);
    await ours.h.query("VACUUM ANALYZE jr_jobs");
    const limit = require("./limit");
    const rs = limit.runnerSql(root);
    if (rs) {
      for (const [name, sql] of [["runner claim", rs.claim], ["minimal claim", limit.OURS_CLAIM]]) {
        const text = sql.replace(/\\gset/g, "").replace(/:n::int/g, "500").replace(/:n\b/g, "500");
        await ours.h.query("BEGIN");
        const r = await ours.h.query(`EXPLAIN (ANALYZE, BUFFERS) ${text}`);
        await ours.h.query("ROLLBACK");
        console.log(`\n== EXPLAIN ${name}, 10,000 queued\n${r.rows.map((x) => x["QUERY PLAN"]).join("\n")}`);
      }
    }
  } finally {
    L.killAll();
    for (const s of Object.values(systems)) {
      if (s.probe) await s.probe.end().catch(() => {});
      await s.close().catch(() => {});
    }
    cluster.stop();
    if (!process.argv.includes("--keep")) fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`profile: ${e.stack || e}\n`);
  L.killAll();
  process.exit(1);
});
