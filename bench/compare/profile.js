// bench/compare/profile.js: the evidence behind docs/performance.md's analysis (run it through
// `bench/compare/run --profile`). On a throwaway cluster: drains jobs with the runner's defaults
// while `perf record` samples the runner, lists the statements that cost the most database
// time (pg_stat_statements), and EXPLAIN ANALYZEs the runner's own claim statement (its text
// taken from pg_stat_statements) with 10,000 and with 1,000,000 jobs queued.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const L = require("./lib");
const { Ours } = require("./ours");

// The runner's statements, read from the host sources (raw strings in pg_claim.cpp/pg_store.cpp).
function hostSql(root) {
  // From the committed tree (HEAD), not the working tree others may be editing.
  const src = (f) => {
    const r = L.run("git", ["-C", root, "show", `${process.env.SQL_COMMIT || "HEAD"}:host/${f}`]);
    return r.code === 0 ? r.stdout : fs.readFileSync(path.join(root, "host", f), "utf8");
  };
  const claimSrc = src("pg_claim.cpp");
  const storeSrc = src("pg_store.cpp");
  // The fast (autocommit) variant: @FAST@ is a compile-time flag in the C++ source.
  const claim = claimSrc.match(/kClaimSql = R"SQL\(([\s\S]*?)\)SQL"/)[1].replace(/@FAST@/g, "true");
  const cols = storeSrc.match(/#define JR_DONE_COLS\s*\\\s*("[\s\S]*?")\n\n/)[1]
    .split(/\s*\\?\n\s*/).map((x) => x.trim().replace(/^"|"$/g, "")).join("");
  const complete = storeSrc.match(/"job_complete_many", R"SQL\(([\s\S]*?)\)SQL"\);/)[1]
    .replace(/\)SQL" JR_DONE_COLS R"SQL\(/g, cols);
  return { claim, complete };
}

const explain = (r) => r.rows.map((x) => x["QUERY PLAN"]).join("\n");

// EXPLAIN ANALYZE the claim of `limit` jobs, then the completion of 500 of them while the
// owner holds `held` running jobs in all (what a completion backlog or a big prefetch means).
async function explainCycle(ours, sql, limit, held) {
  const c = ours.db;
  await c.query("BEGIN");
  try {
    await c.query(`PREPARE jr_claim_probe AS ${sql.claim}`);
    await c.query(`PREPARE jr_complete_probe AS ${sql.complete}`);
    const claim = explain(await c.query(`EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON)
      EXECUTE jr_claim_probe('{echo}', NULL, ${limit}, 'probe', 30, NULL, NULL, NULL)`));
    await c.query(`EXECUTE jr_claim_probe('{echo}', NULL, ${held}, 'probe', 30, NULL, NULL, NULL)`);
    // The completion as the runner sends it: ids as bigint[], attempts as a JSON object keyed
    // by id, no results. Its rows are found by primary key whatever the owner holds.
    const ids = (await c.query("SELECT id FROM jr_jobs WHERE lease_owner = 'probe' ORDER BY id LIMIT 500")).rows
      .map((x) => Number(x.id));
    const attempts = JSON.stringify(Object.fromEntries(ids.map((id) => [String(id), 1])));
    const complete = explain(await c.query(`EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON)
      EXECUTE jr_complete_probe('probe', '{${ids.join(",")}}', ${c.escapeLiteral(attempts)}, NULL)`));
    return { claim, complete };
  } finally {
    await c.query("ROLLBACK");
    await c.query("DEALLOCATE ALL");
  }
}

async function main() {
  const root = path.resolve(L.HERE, "..", "..");
  const runner = process.env.RUNNER || path.join(root, "build", "compare-rel", "runner");
  const echo = process.env.ECHO_SO || path.join(root, "build", "compare-rel", "plugins", "libjr_echo.so");
  const jobs = Number(process.env.JOBS || 200000);
  if (process.env.EXPLAIN_ONLY) process.env.SKIP_DRAIN = "1";
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "jr-profile-"));
  fs.chmodSync(work, 0o755);
  const dataDir = path.join(work, "pg");
  L.run(runner, ["db", "start", "--data-dir", dataDir]);
  // The cluster's superuser: ALTER SYSTEM, pg_stat_statements, and one database per system.
  const url = L.run(runner, ["db", "url", "--superuser", "--data-dir", dataDir]).stdout.trim();
  const admin = await L.connect(url, "postgres");
  await admin.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'");
  await admin.end();
  L.run(runner, ["db", "stop", "--data-dir", dataDir]);
  L.run(runner, ["db", "start", "--data-dir", dataDir]);
  const ours = new Ours(runner, echo, url, work);
  try {
    await ours.setup();
    await ours.db.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    console.log(`load ${L.loadAvg()}`);
    const drains = process.env.SKIP_DRAIN ? [] : [["defaults", []], ["c50-p2000", ["--concurrency", "50", "--prefetch", "2000"]]];
    for (const [tag, args] of drains) {
      await ours.reset();
      ours.enqueueCli(jobs);
      await ours.db.query("TRUNCATE jr_jobs_done");
      await ours.db.query("SELECT pg_stat_statements_reset()");
      const child = ours.startRunner(args, `profile-${tag}`);
      await L.sleep(1000);
      const perfData = path.join(work, `perf-${tag}.data`);
      const perf = L.start("perf", ["record", "-F", "499", "-g", "-p", String(child.pid), "-o", perfData, "--", "sleep", "4"],
        {}, path.join(work, "perf.log"));
      await perf.exited;
      for (;;) {
        await L.sleep(250);
        const busy = await L.q1(ours.db, `SELECT EXISTS (SELECT 1 FROM jr_jobs WHERE state = 'available')
          OR EXISTS (SELECT 1 FROM jr_jobs WHERE state = 'running')`);
        if (!busy) break;
      }
      await L.stop(child);
      const st = await ours.doneStats();
      console.log(`\n== ${tag}: ${L.fmt(st.n / st.s)} jobs/s (${st.n} jobs in ${st.s.toFixed(2)} s), load ${L.loadAvg()}`);
      const top = await ours.db.query(`SELECT calls, round(total_exec_time::numeric) AS total_ms,
          round(mean_exec_time::numeric, 3) AS mean_ms, rows, round(rows::numeric / greatest(calls, 1), 1) AS rows_per_call,
          regexp_replace(left(query, 70), '\\s+', ' ', 'g') AS query
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'jr')
        ORDER BY total_exec_time DESC LIMIT 8`);
      console.table(top.rows);
      const rep = L.run("perf", ["report", "-i", perfData, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none",
        "--percent-limit", "1.5"]);
      console.log(rep.stdout.split("\n").filter((x) => x && !x.startsWith("#")).slice(0, 30).join("\n"));
    }
    const sql = hostSql(root);
    for (const queued of [10000, Number(process.env.BIG || 1000000)]) {
      await ours.reset();
      ours.enqueueMany(queued);
      await ours.db.query("VACUUM ANALYZE jr_jobs");
      for (const [limit, held] of [[110, 600], [500, 5000], [500, 30000]]) {
        const r = await explainCycle(ours, sql, limit, held);
        console.log(`\n== claim statement, ${queued} queued, LIMIT ${limit}\n${r.claim}`);
        console.log(`\n== completion of 500, ${queued} queued, ${held} running for the owner\n${r.complete}`);
      }
    }
  } finally {
    await ours.close();
    L.run(runner, ["db", "stop", "--data-dir", dataDir]);
    if (!process.env.KEEP) fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`profile: ${e.stack || e}\n`);
  process.exit(1);
});
