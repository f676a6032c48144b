// bench/compare/limit.js: the physical limit of each design, measured the same way as the
// drains: pgbench scripts doing the minimum SQL work per job, on the same cluster and connection
// type, after the same preparation (TRUNCATE, bulk enqueue of the same N jobs, count check,
// VACUUM ANALYZE of the schema, CHECKPOINT, the same assertions), timed from pgbench's start to
// its exit once every job is gone, interleaved rounds, medians and ranges. Variants:
//   ours_history     claim with a lease (state, attempt, lease_owner, lease_expires_at,
//                    started_at), then completion fenced by the lease that moves the row to
//                    jr_jobs_done (our schema as migrated: its indexes and trigger included)
//   ours_history_pk  the same with jr_jobs_done reduced to its primary key (secondary indexes
//                    and the webhook trigger dropped): what the history's indexes cost
//   ours_no_history  the same claim, completion = a fenced DELETE (no history row)
//   ours_runner_sql  the runner's own claim and completion statements (taken from host/ at
//                    HEAD): what our SQL costs over the minimum
//   gw_min           graphile-worker's minimum: its batch claim without the named-queue clause
//                    (its "strategy 0", the fastest it documents), completion = its
//                    DELETE ... USING unnest(ids)
// Each pgbench transaction claims up to N jobs and completes them (two autocommit statements).
// Single-threaded (the event loop); pgbench runs as a child process.
"use strict";

const fs = require("fs");
const path = require("path");
const L = require("./lib");
const fair = require("./fair");
const { Ours } = require("./ours");

const oneLine = (s) => s.replace(/\s*\n\s*/g, " ").trim();

const OURS_CLAIM = `WITH c AS (SELECT id FROM jr_jobs WHERE state = 'available' AND queue = 'default'
    ORDER BY priority DESC, id LIMIT :n FOR UPDATE SKIP LOCKED),
  u AS (UPDATE jr_jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = 'pgbench',
    lease_expires_at = now() + interval '30 seconds', started_at = now() FROM c WHERE j.id = c.id
    RETURNING j.id, j.kind, j.payload, j.attempt)
SELECT coalesce(array_agg(id)::text, '{}') AS ids FROM u \\gset`;

// Fencing filters written so no index serves them (the rows are found by primary key).
const OURS_FENCE = "j.id = ANY(:ids::bigint[]) AND j.state || '' = 'running' AND j.lease_owner || '' = 'pgbench'";
const DONE_COLS = "id, queue, kind, payload, state, priority, attempt, max_attempts, result, progress, errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit";
const OURS_MOVE = `WITH d AS (DELETE FROM jr_jobs j WHERE ${OURS_FENCE} RETURNING j.*)
INSERT INTO jr_jobs_done (${DONE_COLS})
SELECT id, queue, kind, payload, 'completed', priority, attempt, max_attempts, NULL, progress,
  errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM d;`;
const OURS_DELETE = `DELETE FROM jr_jobs j WHERE ${OURS_FENCE};`;

const GW_CLAIM = `WITH j AS (SELECT id FROM graphile_worker._private_jobs AS jobs
    WHERE jobs.is_available = true AND run_at <= now() AND task_id = ANY(ARRAY[:tid]::int[])
    ORDER BY priority ASC, run_at ASC LIMIT :n FOR UPDATE SKIP LOCKED),
  u AS (UPDATE graphile_worker._private_jobs AS jobs SET attempts = jobs.attempts + 1,
    locked_by = 'pgbench', locked_at = now() FROM j WHERE jobs.id = j.id RETURNING jobs.*)
SELECT coalesce(array_agg(id)::text, '{}') AS ids FROM u \\gset`;
const GW_DELETE = `DELETE FROM graphile_worker._private_jobs AS jobs USING unnest(:ids::bigint[]) n(n) WHERE id = n;`;

// The runner's claim (fast variant) and completion, from the committed sources; null when the
// sources no longer have the shape this parser expects (the variant is then skipped).
function runnerSql(root) {
  const src = (f) => {
    const r = L.run("git", ["-C", root, "show", `HEAD:host/${f}`]);
    return r.code === 0 ? r.stdout : fs.readFileSync(path.join(root, "host", f), "utf8");
  };
  try {
    const claimSrc = src("pg_claim.cpp").match(/kClaimSql = R"SQL\(([\s\S]*?)\)SQL"/)[1].replace(/@FAST@/g, "true");
    const cut = claimSrc.indexOf("SELECT upd.*");
    if (cut < 0) return null;
    const claim = `${claimSrc.slice(0, cut)}SELECT coalesce(array_agg(id)::text, '{}') AS ids,
      coalesce(jsonb_object_agg(id::text, attempt)::text, '{}') AS att FROM upd`;
    const storeSrc = src("pg_store.cpp");
    const cols = storeSrc.match(/#define JR_DONE_COLS\s*\\\s*("[\s\S]*?")\n\n/)[1]
      .split(/\s*\\?\n\s*/).map((x) => x.trim().replace(/^"|"$/g, "")).join("");
    const complete = storeSrc.match(/"job_complete_many", R"SQL\(([\s\S]*?)\)SQL"\);/)[1]
      .replace(/\)SQL" JR_DONE_COLS R"SQL\(/g, cols);
    const claimArgs = { 1: "'{echo}'", 2: "NULL", 3: ":n", 4: "'pgbench'", 5: "30", 6: "NULL", 7: "NULL", 8: "'{default}'" };
    const doneArgs = { 1: "'pgbench'", 2: ":ids", 3: ":att", 4: "NULL" };
    return {
      claim: `${claim.replace(/\$(\d)/g, (_, k) => claimArgs[k])} \\gset`,
      complete: `${complete.replace(/\$(\d)/g, (_, k) => doneArgs[k])};`,
    };
  } catch {
    return null;
  }
}

async function pgbench(cluster, db, script, vars, clients, transactions, work, tag) {
  const file = path.join(work, `limit-${tag}.sql`);
  fs.writeFileSync(file, script);
  const args = ["-n", "-M", "prepared", "-f", file, "-c", String(clients), "-j", String(clients),
    "-t", String(transactions), ...cluster.cliArgs(db)];
  for (const [k, v] of Object.entries(vars)) args.push("-D", `${k}=${v}`);
  const t = L.nowMs();
  const r = L.run("pgbench", args);
  const seconds = (L.nowMs() - t) / 1000;
  if (r.code !== 0) throw new Error(`pgbench ${tag} failed: ${r.stderr}\n${r.stdout}`);
  return seconds;
}

async function limits(cluster, systems, P, F, opts, work) {
  const root = path.resolve(L.HERE, "..", "..");
  const ours = systems.ours;
  const n = P.jobs;
  const batch = 500;
  const clientCounts = P.quick ? [4] : [2, 4, 8];
  const rounds = P.quick ? 2 : 3;

  // Databases of their own, so the schema changes of a variant never reach the drains.
  const hist = new Ours(cluster, ours.runner, path.join(ours.plugins, "libjr_echo.so"), work, "jrlim");
  await hist.setup();
  const pk = new Ours(cluster, ours.runner, path.join(ours.plugins, "libjr_echo.so"), work, "jrlim_pk");
  await pk.setup();
  await pk.h.query(`DROP TRIGGER jr_jobs_done_webhooks ON jr_jobs_done;
    DROP INDEX jr_jobs_done_state_idx, jr_jobs_done_kind_idx, jr_jobs_done_kind_state_idx`);
  for (const s of [hist, pk]) await s.h.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const rs = runnerSql(root);
  const variants = [
    { key: "ours_history", sys: hist, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_MOVE)}\n`, vars: { n: batch } },
    { key: "ours_history_pk", sys: pk, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_MOVE)}\n`, vars: { n: batch } },
    { key: "ours_no_history", sys: hist, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_DELETE)}\n`, vars: { n: batch }, noHistory: true },
  ];
  if (rs) variants.push({ key: "ours_runner_sql", sys: hist, script: `${oneLine(rs.claim)}\n${oneLine(rs.complete)}\n`, vars: { n: batch } });
  if (systems.gw) {
    variants.push({ key: "gw_min", sys: systems.gw, script: `${oneLine(GW_CLAIM)}\n${oneLine(GW_DELETE)}\n`, vars: { n: batch, tid: systems.gw.taskId } });
  }
  const cells = [];
  for (const v of variants) for (const c of clientCounts) cells.push({ ...v, clients: c, cell: `${v.key}_c${c}` });
  const by = Object.fromEntries(cells.map((c) => [c.cell, []]));
  for (let r = 0; r < rounds; ++r) {
    const k = r % cells.length;
    for (const cell of [...cells.slice(k), ...cells.slice(0, k)]) {
      const sys = cell.sys;
      const loadBefore = L.load1();
      await fair.prepare(sys, n, F, opts);
      const tx = Math.ceil(n / (batch * cell.clients)) + 2;
      const seconds = await pgbench(cluster, sys.db, cell.script, cell.vars, cell.clients, tx, work, cell.cell);
      const left = Number(await L.q1(sys.h, sys.unfinishedSql.replace("SELECT id", "SELECT count(*) FROM (SELECT id").replace("LIMIT 1", "LIMIT 1) x")));
      F.check("every job of every drain completed", left === 0, `limit ${cell.cell}: jobs left after pgbench`);
      if (sys === hist && !cell.noHistory) {
        const done = await sys.countDone();
        F.check("every job of every drain completed", done === n, `limit ${cell.cell}: ${done} history rows of ${n}`);
      }
      const x = { round: r + 1, jobs_per_s: n / seconds, seconds, load_before: loadBefore, load_after: L.load1() };
      by[cell.cell].push(x);
      L.log(`limit round ${r + 1} ${cell.cell}: ${L.fmt(x.jobs_per_s)} jobs/s (${seconds.toFixed(2)} s)`);
    }
  }
  const cellSummary = {};
  for (const c of cells) cellSummary[c.cell] = { variant: c.key, clients: c.clients, jobs_per_s: L.summary(by[c.cell].map((x) => x.jobs_per_s)), rounds: by[c.cell] };
  // Each variant's floor: its best client count by median.
  const floors = {};
  for (const v of variants) {
    const xs = Object.values(cellSummary).filter((x) => x.variant === v.key);
    const b = xs.reduce((m, x) => (x.jobs_per_s.median > m.jobs_per_s.median ? x : m));
    floors[v.key] = { clients: b.clients, batch, jobs_per_s: b.jobs_per_s };
  }
  for (const s of [hist, pk]) await s.close();
  return { n, batch, rounds, client_counts: clientCounts, runner_sql: rs ? "from host/ at HEAD" : "skipped: sources not parsable",
    scripts: Object.fromEntries(variants.map((v) => [v.key, v.script])), cells: cellSummary, floors };
}

module.exports = { limits, runnerSql, OURS_CLAIM };
