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
//   ours_runner_sql  the runner's own claim and completion statements (job_claim_fast and
//                    job_complete_many from host/store/sql/*.sql at HEAD): what our SQL
//                    costs over the minimum
//                    (with the runner's session setting: jit off)
//   ours_runner_claim / ours_runner_complete
//                    one half of the runner's SQL beside the minimal other half
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

// The runner's own sessions run without JIT (session_no_jit in host/store/sql/schema.sql): its
// variants below get the same session setting.
const RUNNER_SESSION = "-c jit=off";

// The same, also returning the attempts the runner's completion fences on.
const OURS_CLAIM_ATT = OURS_CLAIM.replace("AS ids FROM u", "AS ids,\n  coalesce(jsonb_object_agg(id::text, attempt)::text, '{}') AS att FROM u");

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

// The named statements of host/store/sql/*.sql at HEAD (the working tree's when git has none),
// read the way jr_sqlgen reads them (host/store/sql/sqlgen.cpp): blocks opened by
// `-- name: NAME [:prepared]` or `-- fragment: NAME`, full-line comments dropped, a trailing ';'
// dropped, {{fragment KEY=value ...}} expanded with @KEY@ replaced.
function namedSql(root) {
  const dir = "host/store/sql";
  const ls = L.run("git", ["-C", root, "ls-tree", "--name-only", `HEAD:${dir}`]);
  const files = ls.code === 0 ? ls.stdout.split("\n").filter((f) => f.endsWith(".sql"))
    : fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(".sql"));
  const blocks = {};
  for (const f of files) {
    const r = L.run("git", ["-C", root, "show", `HEAD:${dir}/${f}`]);
    const text = r.code === 0 ? r.stdout : fs.readFileSync(path.join(root, dir, f), "utf8");
    let cur = null;
    for (const line of text.split("\n")) {
      const m = line.match(/^-- (name|fragment): ([a-z][a-z0-9_]*)( :prepared)?\s*$/);
      if (m) { cur = blocks[m[2]] = { fragment: m[1] === "fragment", text: "" }; continue; }
      if (/^\s*(--|$)/.test(line) || !cur) continue;
      cur.text += `${line}\n`;
    }
  }
  const expand = (text, depth) => {
    if (depth > 8) throw new Error("fragments nested too deep");
    return text.replace(/\{\{([a-z][a-z0-9_]*)((?: +[A-Z][A-Z0-9_]*=(?:'[^']*'|[^ }']+))*) *\}\}/g, (_, name, args) => {
      if (!blocks[name] || !blocks[name].fragment) throw new Error(`{{${name}}}: no such fragment`);
      let body = expand(blocks[name].text, depth + 1);
      for (const a of args.matchAll(/([A-Z][A-Z0-9_]*)=('[^']*'|[^ }']+)/g)) body = body.split(`@${a[1]}@`).join(a[2]);
      return body;
    });
  };
  return (name) => {
    if (!blocks[name] || blocks[name].fragment) throw new Error(`${dir}: no statement named ${name}`);
    return expand(blocks[name].text, 0).replace(/[\s;]+$/, "");
  };
}

// The runner's claim (its fast path, job_claim_fast) and batch completion (job_complete_many)
// as the runner sends them, turned into pgbench statements. Throws when the statements no
// longer have the shape this expects: a floor of the runner's SQL that silently vanished from
// the report would hide what it is meant to show.
function runnerSql(root) {
  const sql = namedSql(root);
  const claimSrc = sql("job_claim_fast");
  const cut = claimSrc.search(/\nSELECT upd\./);
  if (cut < 0) throw new Error("job_claim_fast: no final 'SELECT upd.' to replace (bench/compare/limit.js)");
  const claim = `${claimSrc.slice(0, cut)}
SELECT coalesce(array_agg(id)::text, '{}') AS ids,
       coalesce(jsonb_object_agg(id::text, attempt)::text, '{}') AS att FROM upd`;
  const complete = sql("job_complete_many");
  // $1 kinds, $2 queue patterns, $3 limit, $4 worker id, $5 lease seconds, $6 queues excluded,
  // $7 kinds excluded, $8 exact queues (NULL: every queue, as a runner without --queues).
  const claimArgs = { 1: "'{echo}'", 2: "NULL", 3: ":n", 4: "'pgbench'", 5: "30", 6: "NULL", 7: "NULL", 8: "NULL" };
  const doneArgs = { 1: "'pgbench'", 2: ":ids", 3: ":att", 4: "NULL" };
  const subst = (text, args) => text.replace(/\$(\d+)/g, (m, k) => {
    if (!(k in args)) throw new Error(`runner SQL: parameter ${m} not mapped (bench/compare/limit.js)`);
    return args[k];
  });
  return { claim: `${subst(claim, claimArgs)} \\gset`, complete: `${subst(complete, doneArgs)};` };
}

async function pgbench(cluster, db, script, vars, clients, transactions, work, tag, pgoptions) {
  const file = path.join(work, `limit-${tag}.sql`);
  fs.writeFileSync(file, script);
  const args = ["-n", "-M", "prepared", "-f", file, "-c", String(clients), "-j", String(clients),
    "-t", String(transactions), ...cluster.cliArgs(db)];
  for (const [k, v] of Object.entries(vars)) args.push("-D", `${k}=${v}`);
  const t = L.nowMs();
  const r = L.run("pgbench", args, pgoptions ? { env: { ...process.env, PGOPTIONS: pgoptions } } : {});
  const seconds = (L.nowMs() - t) / 1000;
  if (r.code !== 0) throw new Error(`pgbench ${tag} failed: ${r.stderr}\n${r.stdout}`);
  return seconds;
}

async function limits(cluster, systems, P, F, opts, work) {
  const root = path.resolve(L.HERE, "..", "..");
  const ours = systems.ours;
  const n = P.jobs;
  const batch = 500;
  // LIMIT_CLIENTS=1,4 (environment) for a diagnosis at other client counts.
  const clientCounts = process.env.LIMIT_CLIENTS ? process.env.LIMIT_CLIENTS.split(",").map(Number)
    : P.quick ? [4] : [2, 4, 8];
  const rounds = P.quick ? 2 : 3;

  // Databases of their own, so the schema changes of a variant never reach the drains.
  const hist = new Ours(cluster, ours.runner, path.join(ours.plugins, "libjr_echo.so"), work, "jrlim");
  await hist.setup();
  const pk = new Ours(cluster, ours.runner, path.join(ours.plugins, "libjr_echo.so"), work, "jrlim_pk");
  await pk.setup();
  await pk.h.query(`DROP TRIGGER jr_jobs_done_webhooks ON jr_jobs_done;
    DROP INDEX IF EXISTS jr_jobs_done_state_idx, jr_jobs_done_kind_idx, jr_jobs_done_kind_state_idx`);
  for (const s of [hist, pk]) await s.h.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
  const rs = runnerSql(root);
  const variants = [
    { key: "ours_history", sys: hist, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_MOVE)}\n`, vars: { n: batch } },
    { key: "ours_history_pk", sys: pk, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_MOVE)}\n`, vars: { n: batch } },
    { key: "ours_no_history", sys: hist, script: `${oneLine(OURS_CLAIM)}\n${oneLine(OURS_DELETE)}\n`, vars: { n: batch }, noHistory: true },
  ];
  variants.push({ key: "ours_runner_sql", sys: hist, pgoptions: RUNNER_SESSION, script: `${oneLine(rs.claim)}\n${oneLine(rs.complete)}\n`, vars: { n: batch } });
  // Each half of the runner's SQL beside the minimal other half: which one costs.
  variants.push({ key: "ours_runner_claim", sys: hist, pgoptions: RUNNER_SESSION, script: `${oneLine(rs.claim)}\n${oneLine(OURS_MOVE)}\n`, vars: { n: batch } });
  variants.push({ key: "ours_runner_complete", sys: hist, pgoptions: RUNNER_SESSION, script: `${oneLine(OURS_CLAIM_ATT)}\n${oneLine(rs.complete)}\n`, vars: { n: batch } });
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
      const seconds = await pgbench(cluster, sys.db, cell.script, cell.vars, cell.clients, tx, work, cell.cell, cell.pgoptions);
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
  return { n, batch, rounds, client_counts: clientCounts, runner_sql: "job_claim_fast and job_complete_many from host/store/sql at HEAD",
    scripts: Object.fromEntries(variants.map((v) => [v.key, v.script])), cells: cellSummary, floors };
}

module.exports = { limits, runnerSql, OURS_CLAIM };
