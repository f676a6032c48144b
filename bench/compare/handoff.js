// bench/compare/handoff.js: handoff latency of our runner (issue 17: "8 jobs of 0.4 s with one
// --lock-key took 7.7 s instead of about 3.2 s"). Two workloads, each enqueued before the runner
// starts, each job an echo job sleeping 400 ms:
//   lock_key  8 jobs sharing one --lock-key (at most one runs at a time): the handoff is the
//             time from one keyed job's completion to the next one's start
//   chain     8 jobs, each --depends-on the previous one: the handoff is the time from a
//             parent's completion to its child's start (the child's last parent)
// Times are the database's (jr_jobs_done.started_at / finished_at). Reported as a distribution
// (every gap, median, p90, max) and the makespan against the ideal 8 x 0.4 s, in-process and
// with no flags (sandboxed). Ours only: the peers' equivalents (graphile-worker's named queues,
// pg-boss's singleton keys) have other semantics. Single-threaded (the event loop).
"use strict";

const L = require("./lib");

const JOBS = 8;
const SLEEP_MS = 400;

function enqueueOne(ours, extra) {
  const r = L.run(ours.runner, ["enqueue", "echo", "--payload", JSON.stringify({ sleep_ms: SLEEP_MS }), ...extra], { env: ours.env });
  if (r.code !== 0) throw new Error(`runner enqueue failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").pop();
}

async function runOnce(ours, workload, args, tag) {
  await ours.reset();
  let prev = null;
  for (let i = 0; i < JOBS; ++i) {
    if (workload === "lock_key") enqueueOne(ours, ["--lock-key", "handoff"]);
    else prev = enqueueOne(ours, prev ? ["--depends-on", prev] : []);
  }
  const w = ours.worker(args, tag);
  w.go();
  const deadline = L.nowMs() + 60000;
  while ((await ours.probe.query(ours.unfinishedSql)).rows.length > 0) {
    if (L.nowMs() > deadline) throw new Error(`handoff ${tag}: not done within 60 s`);
    if (w.exited()) throw new Error(w.why());
    await L.sleep(50);
  }
  await w.stop();
  const rows = (await ours.h.query(`SELECT id, extract(epoch from started_at) * 1000 AS s, extract(epoch from finished_at) * 1000 AS f
      FROM jr_jobs_done WHERE state = 'completed' ORDER BY started_at`)).rows.map((x) => ({ s: Number(x.s), f: Number(x.f) }));
  if (rows.length !== JOBS) throw new Error(`handoff ${tag}: ${rows.length} of ${JOBS} jobs completed`);
  const gaps = [];
  for (let i = 1; i < rows.length; ++i) gaps.push(rows[i].s - rows[i - 1].f);
  const makespan = rows[rows.length - 1].f - rows[0].s;
  return { gaps_ms: gaps.map((g) => Number(g.toFixed(1))), makespan_ms: Number(makespan.toFixed(0)) };
}

async function run(ours, P) {
  const rounds = P.quick ? 1 : 3;
  const cfgs = [["in_process", ["--isolation", "none"]], ["default", []]];
  const out = { jobs: JOBS, sleep_ms: SLEEP_MS, ideal_makespan_ms: JOBS * SLEEP_MS, rounds, cells: {} };
  for (const workload of ["lock_key", "chain"]) {
    for (const [name, args] of cfgs) {
      const gaps = [];
      const spans = [];
      for (let r = 0; r < rounds; ++r) {
        const x = await runOnce(ours, workload, args, `handoff-${workload}-${name}-r${r + 1}`);
        gaps.push(...x.gaps_ms);
        spans.push(x.makespan_ms);
      }
      const sorted = [...gaps].sort((a, b) => a - b);
      const c = { gaps_ms: gaps, p50_ms: L.percentile(sorted, 0.5), p90_ms: L.percentile(sorted, 0.9), max_ms: sorted[sorted.length - 1],
        makespan_ms: L.summary(spans), load: L.load1() };
      out.cells[`${workload}/${name}`] = c;
      L.log(`handoff ${workload} ${name}: gap p50 ${L.fmt(c.p50_ms, 1)} ms, p90 ${L.fmt(c.p90_ms, 1)} ms, max ${L.fmt(c.max_ms, 1)} ms; ` +
        `makespan ${L.fmtRange(c.makespan_ms)} ms (ideal ${JOBS * SLEEP_MS})`);
    }
  }
  return out;
}

module.exports = { run };
