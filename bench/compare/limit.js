// bench/compare/limit.js: what the database allows. pgbench drives the best raw SQL
// claim/complete cycle on our own schema (database "jr"): claim N available jobs with an
// UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) ... RETURNING, then complete them in a
// second transaction by moving them to jr_jobs_done (DELETE ... RETURNING -> INSERT), as the
// runner does. jobs/s counts rows that reached jr_jobs_done, not pgbench transactions.
"use strict";

const fs = require("fs");
const path = require("path");
const L = require("./lib");

const CLAIM = `WITH c AS (SELECT id FROM jr_jobs WHERE state = 'available' AND queue = 'default'
    AND kind = 'echo' ORDER BY priority DESC, id LIMIT :n FOR UPDATE SKIP LOCKED),
  u AS (UPDATE jr_jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = 'pgbench',
    lease_expires_at = now() + interval '30 seconds', started_at = now() FROM c WHERE j.id = c.id
    RETURNING j.id, j.kind, j.queue, j.payload::text AS payload, j.priority, j.attempt)
SELECT coalesce(array_agg(id)::text, '{}') AS ids FROM u \\gset`;

const COMPLETE = `WITH d AS (DELETE FROM jr_jobs j WHERE j.id = ANY(:ids::bigint[]) AND j.state = 'running'
    AND j.lease_owner = 'pgbench' RETURNING j.*)
INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, attempt, max_attempts, result,
  progress, errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit)
SELECT id, queue, kind, payload, 'completed', priority, attempt, max_attempts, NULL, progress,
  errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM d;`;

// One pgbench run: N jobs per claim, `clients` connections, `seconds` long, on a queue of
// `queued` jobs enqueued beforehand by `ours`. Returns jobs/s.
async function cycle(ours, n, clients, seconds, queued) {
  await ours.reset();
  ours.enqueueMany(queued);
  await ours.db.query("VACUUM ANALYZE jr_jobs");
  const script = path.join(ours.work, "claim_complete.sql");
  // pgbench wants each command on one line.
  const oneLine = (s) => s.replace(/\n\s*/g, " ");
  fs.writeFileSync(script, `${oneLine(CLAIM)}\n${oneLine(COMPLETE)}\n`);
  const c = L.pgConfig(ours.clusterUrl, "jr");
  const args = ["-n", "-M", "prepared", "-f", script, "-D", `n=${n}`, "-c", String(clients),
    "-j", String(clients), "-T", String(seconds), "-h", c.host, "-d", "jr"];
  if (c.port) args.push("-p", String(c.port));
  if (c.user) args.push("-U", c.user);
  const r = L.run("pgbench", args);
  if (r.code !== 0) throw new Error(`pgbench failed: ${r.stderr}\n${r.stdout}`);
  const done = Number(await L.q1(ours.db, "SELECT count(*) FROM jr_jobs_done"));
  const left = Number(await L.q1(ours.db, "SELECT count(*) FROM jr_jobs WHERE state = 'available'"));
  return { jobs_per_s: done / seconds, done, clients, capped: left === 0 };
}

// Best over a few client counts for each N.
async function limits(ours, quick) {
  const seconds = quick ? 5 : 10;
  const plan = quick
    ? [[1, [8]], [50, [4]], [500, [4, 8]]]
    : [[1, [4, 8, 16]], [50, [2, 4, 8]], [500, [2, 4, 8]]];
  const expect = { 1: 4000, 50: 40000, 500: 90000 };
  const out = {};
  for (const [n, clientCounts] of plan) {
    let best = null;
    for (const clients of clientCounts) {
      const r = await cycle(ours, n, clients, seconds, Math.ceil((expect[n] * seconds * 1.3) / 10000) * 10000);
      L.log(`raw SQL N=${n} clients=${clients}: ${L.fmt(r.jobs_per_s)} jobs/s${r.capped ? " (queue ran dry)" : ""}`);
      if (!best || r.jobs_per_s > best.jobs_per_s) best = r;
    }
    out[n] = best;
  }
  return out;
}

module.exports = { cycle, limits };
