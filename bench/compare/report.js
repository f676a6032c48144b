// bench/compare/report.js: turns the results object of compare.js into the human tables on
// stdout and the final JSON line (always the last line of output), and regenerates the README's
// performance table from a saved results file:
//   node report.js FILE.json              the tables and the JSON line again
//   node report.js --markdown FILE.json   the README table (markdown) on stdout
//   node report.js --readme README.md FILE.json
//                                         replaces the README's table between the markers
//                                         <!-- bench:compare:begin --> and <!-- bench:compare:end -->
// Pure formatting besides reading/writing those files.
"use strict";

const fs = require("fs");
const L = require("./lib");

const med = (s) => (s && s.median !== undefined ? s.median : null);
const x2 = (r) => (r === null || r === undefined ? "n/a" : `${r.toFixed(2)}x`);
// "1.23x (1.10-1.31x)": a per-round ratio summary.
function ratioText(s) {
  if (!s || s.median === null) return "n/a";
  if (s.n === 1) return x2(s.median);
  return `${s.median.toFixed(2)}x (${s.min.toFixed(2)}-${s.max.toFixed(2)}x)`;
}
const pct = (s) => (!s || s.median === null ? "n/a" : s.n === 1 ? `${(100 * s.median).toFixed(0)}%`
  : `${(100 * s.median).toFixed(0)}% (${(100 * s.min).toFixed(0)}-${(100 * s.max).toFixed(0)}%)`);

// The goals of issue 18 with their status in this run.
function goals(R) {
  const P = R.phases;
  const d = P.drain;
  const out = [];
  const g = (goal, value, ok, note = "") => out.push({ goal, value, met: ok, note });
  const pct = (s) => (!s || s.median === null ? "n/a" : `${(100 * s.median).toFixed(0)}%`);
  if (d && d.ratios) {
    const r = d.ratios;
    if (r.default_vs_gw_best) g("default runner (sandboxed, no flags) >= 1.0x graphile-worker best", ratioText(r.default_vs_gw_best), r.default_vs_gw_best.median >= 1.0);
    if (r.inproc_best_vs_gw_best) g("in-process best >= 1.3x graphile-worker best", ratioText(r.inproc_best_vs_gw_best), r.inproc_best_vs_gw_best.median >= 1.3);
    if (r.inproc_best_vs_boss_best) g("in-process best >= 2x pg-boss best", ratioText(r.inproc_best_vs_boss_best), r.inproc_best_vs_boss_best.median >= 2.0);
    if (r.sandboxed_vs_inproc_same_flags) g("sandboxed vs in-process, same flags >= 0.8x", ratioText(r.sandboxed_vs_inproc_same_flags), r.sandboxed_vs_inproc_same_flags.median >= 0.8);
  }
  const lat = P.latency && P.latency.summary.ours_default;
  if (lat) {
    g("latency p99 at 500 jobs/s, sandboxed default <= 5 ms", `${L.fmtRange(lat.p99_ms, 2)} ms`, med(lat.p99_ms) <= 5,
      `from the enqueue commit to the claim; ${L.fmt(med(lat.achieved_rate))}/s achieved`);
  }
  const e = P.enqueue;
  if (e && e.bulk.gw) {
    const r = med(e.bulk.ours) / med(e.bulk.gw);
    g("bulk enqueue >= 2x graphile-worker addJobs", x2(r), r >= 2);
  }
  if (P.scale) {
    g(`${L.fmt(P.scale.big.n)}-job drain >= 90% of a ${L.fmt(P.scale.small.n)}-job drain (the goal: 1,000,000)`, `${(100 * P.scale.big_vs_small).toFixed(0)}%`,
      P.scale.big_vs_small >= 0.9, "first claim to last completion");
  }
  if (P.pressure) {
    for (const cell of ["idle_in_tx", "active_readers"]) {
      for (const k of ["ours_inproc", "ours_default"]) {
        const x = P.pressure.summary[k];
        const s = x && x[cell];
        if (!s) continue;
        // The goal is about 800 jobs/s offered: a clean cell whose producer reached less than 90%
        // of that cannot say whether the rate holds at 800/s.
        const reached = med(x.clean.achieved_enqueue_per_s) / P.pressure.offered_per_s;
        if (reached < 0.9) {
          g(`MVCC pressure ${cell}, ${k}: >= 90% of clean at ${P.pressure.offered_per_s}/s`, `${pct(s.share_of_clean)} of clean, kept up ${pct(s.kept_up)}`,
            null, `not evaluated: the producer reached ${L.fmt(med(x.clean.achieved_enqueue_per_s))}/s of ${P.pressure.offered_per_s}/s on this machine`);
        } else {
          g(`MVCC pressure ${cell}, ${k}: >= 90% of clean`, `${pct(s.share_of_clean)} (kept up ${pct(s.kept_up)})`, s.share_of_clean.median >= 0.9 && s.kept_up.median >= 0.9);
        }
      }
    }
  }
  return out;
}

function header(R) {
  const m = R.machine;
  return [
    `machine: ${m.cpus} x ${m.cpu}, ${m.mem_gb} GB, kernel ${m.kernel}; PostgreSQL ${m.postgres} (fsync ${m.fsync}, synchronous_commit ${m.synchronous_commit}, shared_buffers ${m.shared_buffers})`,
    `versions: runner ${m.runner} (${m.runner_commit}); graphile-worker ${m.graphile_worker}; pg-boss ${m.pg_boss}; node ${m.node}`,
    `run: ${R.params.quick ? "--quick" : "full"}, ${R.params.jobs} jobs per drain, ${R.params.rounds} interleaved rounds (sweep ${R.params.sweep_rounds}), connection ${R.params.conn}, statistics step ${R.params.stats}, probe every ${R.params.probe_ms} ms`,
    `date: ${R.started} .. ${R.finished}; load average start ${R.load_start}, end ${R.load_end}`,
  ];
}

function table(rows, widths) {
  return rows.map((r) => r.map((c, i) => String(c ?? "").padEnd(widths[i] || 0)).join("  ").trimEnd()).join("\n");
}

function print(R) {
  const P = R.phases;
  const lines = [""];
  lines.push(...header(R));
  lines.push("preparation per drain (every system):");
  for (const s of R.preparation.per_drain) lines.push(`  - ${s}`);
  if (P.sweep) {
    lines.push("", `sweep (${P.sweep.rounds} round(s), ${P.sweep.n} jobs; medians (min-max) jobs/s):`);
    const rows = Object.values(P.sweep.summary).map((s) => [s.key, L.fmtRange(s.jobs_per_s), `load ${L.fmtRange(s.load, 1)}`,
      P.sweep.chosen && Object.values(P.sweep.chosen).includes(s.key) ? "<- chosen" : ""]);
    lines.push(table(rows, [28, 26, 22]));
  }
  const d = P.drain;
  if (d) {
    lines.push("", `drain (${d.rounds} interleaved rounds, ${d.n} jobs; medians (min-max)):`);
    const rows = [["config", "jobs/s", "load", "stmts/job", "WAL B/job", "blocks/job", "cpu us/job worker+backends", "settings"]];
    for (const s of Object.values(d.summary)) {
      const p = s.profile;
      rows.push([s.key, L.fmtRange(s.jobs_per_s), L.fmtRange(s.load, 1), p.statements_per_job.toFixed(3), L.fmt(p.wal_bytes_per_job),
        p.blocks_per_job.toFixed(2), `${p.cpu_us_per_job.worker.toFixed(1)} + ${p.cpu_us_per_job.backends.toFixed(1)}`,
        Array.isArray(s.settings) ? s.settings.join(" ") || "(no flags)" : JSON.stringify(s.settings)]);
    }
    lines.push(table(rows, [22, 26, 14, 10, 10, 11, 27]));
    lines.push("ratios (per interleaved round, median (min-max)):");
    for (const [k, v] of Object.entries(d.ratios)) if (v) lines.push(`  ${k}: ${ratioText(v)}`);
  }
  if (P.limit) {
    lines.push("", `physical limit (pgbench, ${P.limit.n} jobs, claim batch ${P.limit.batch}, ${P.limit.rounds} rounds; best client count by median):`);
    for (const [k, f] of Object.entries(P.limit.floors)) lines.push(`  ${k.padEnd(18)} ${L.fmtRange(f.jobs_per_s).padEnd(28)} -c ${f.clients}`);
    const sh = shares(R);
    for (const [k, v] of Object.entries(sh)) lines.push(`  ${k}: ${v === null ? "n/a" : `${(100 * v).toFixed(0)}%`}`);
  }
  const l = P.latency;
  if (l) {
    lines.push("", `latency at ${l.rate} jobs/s for ${l.seconds} s (${l.rounds} round(s)), enqueue commit -> start, ms:`);
    for (const [k, s] of Object.entries(l.summary)) {
      lines.push(`  ${k.padEnd(14)} p50 ${L.fmtRange(s.p50_ms, 2).padEnd(20)} p99 ${L.fmtRange(s.p99_ms, 2).padEnd(20)} achieved ${L.fmtRange(s.achieved_rate)}/s`);
    }
  }
  if (P.pressure) {
    lines.push("", `MVCC pressure (${P.pressure.offered_per_s} jobs/s offered, ${P.pressure.slots} slots, ${P.pressure.seconds} s per cell):`);
    for (const [k, s] of Object.entries(P.pressure.summary)) {
      const c = (x) => `${L.fmtRange(x.completed_per_s)}/s of ${L.fmtRange(x.achieved_enqueue_per_s)}/s enqueued, kept up ${pct(x.kept_up)}, backlog ${L.fmtRange(x.backlog_end)}, dead tuples ${L.fmtRange(x.dead_tuples_end)}`;
      lines.push(`  ${k}:`);
      lines.push(`    clean           ${c(s.clean)}`);
      lines.push(`    idle_in_tx      ${c(s.idle_in_tx)}; ${pct(s.idle_in_tx.share_of_clean)} of clean`);
      lines.push(`    active_readers  ${c(s.active_readers)}; ${pct(s.active_readers.share_of_clean)} of clean`);
    }
  }
  if (P.handoff) {
    lines.push("", `handoff (${P.handoff.jobs} jobs of ${P.handoff.sleep_ms} ms, ideal makespan ${P.handoff.ideal_makespan_ms} ms):`);
    for (const [k, c] of Object.entries(P.handoff.cells)) {
      lines.push(`  ${k.padEnd(22)} gap p50 ${L.fmt(c.p50_ms, 1)} ms, p90 ${L.fmt(c.p90_ms, 1)} ms, max ${L.fmt(c.max_ms, 1)} ms; makespan ${L.fmtRange(c.makespan_ms)} ms`);
    }
  }
  if (P.enqueue) {
    const e = P.enqueue;
    lines.push("", `enqueue (${e.jobs} jobs, ${e.rounds} rounds): bulk ${Object.entries(e.bulk).map(([k, s]) => `${k} ${L.fmtRange(s)}`).join(", ")}; ` +
      `single ${Object.entries(e.single).map(([k, v]) => `${k} ${L.fmt(v)}`).join(", ")} jobs/s`);
  }
  if (P.scale) {
    lines.push("", `scale (ours ${P.scale.args}): ${L.fmt(P.scale.small.db_rate)} jobs/s with ${P.scale.small.n} queued, ` +
      `${L.fmt(P.scale.big.db_rate)} with ${P.scale.big.n} (${(100 * P.scale.big_vs_small).toFixed(0)}%)`);
  }
  lines.push("", "goals:");
  for (const x of goals(R)) lines.push(`  [${x.met === null ? "n/a" : x.met ? "met" : "NOT met"}] ${x.goal}: ${x.value}${x.note ? ` (${x.note})` : ""}`);
  if (R.fairness) {
    lines.push("", `fairness assertions (${R.fairness.all_passed ? "all passed" : "FAILED"}):`);
    for (const a of R.fairness.assertions) lines.push(`  ${a.failed ? "FAIL" : "ok"}  ${a.name} (${a.passed} checks)`);
  }
  console.log(lines.join("\n"));
  R.goals = goals(R);
  R.shares_of_floor = P.limit ? shares(R) : null;
  console.log(JSON.stringify(R));
}

// How close each system's drain comes to its own floor, and what the history costs.
function shares(R) {
  const P = R.phases;
  const f = P.limit.floors;
  const d = P.drain ? P.drain.summary : {};
  const r = (a, b) => (a && b ? a / b : null);
  return {
    ours_inproc_best_of_ours_history_floor: r(med(d.ours_inproc_best && d.ours_inproc_best.jobs_per_s), med(f.ours_history && f.ours_history.jobs_per_s)),
    ours_default_of_ours_history_floor: r(med(d.ours_default && d.ours_default.jobs_per_s), med(f.ours_history && f.ours_history.jobs_per_s)),
    gw_best_of_gw_floor: r(med(d.gw_best && d.gw_best.jobs_per_s), med(f.gw_min && f.gw_min.jobs_per_s)),
    history_floor_of_no_history_floor: r(med(f.ours_history && f.ours_history.jobs_per_s), med(f.ours_no_history && f.ours_no_history.jobs_per_s)),
    history_pk_floor_of_no_history_floor: r(med(f.ours_history_pk && f.ours_history_pk.jobs_per_s), med(f.ours_no_history && f.ours_no_history.jobs_per_s)),
    runner_sql_floor_of_history_floor: r(med(f.ours_runner_sql && f.ours_runner_sql.jobs_per_s), med(f.ours_history && f.ours_history.jobs_per_s)),
  };
}

// The README's performance table (markdown), generated from a results object.
function markdown(R) {
  const P = R.phases;
  const d = P.drain;
  const m = R.machine;
  const out = [];
  const kind = R.params.quick ? "a `--quick` run" : "a full run";
  out.push(`Generated by \`bench/compare/report.js\` from ${kind} of \`bench/compare/run\` (${R.started.slice(0, 16).replace("T", " ")} UTC, ` +
    `runner ${m.runner} at ${m.runner_commit}, graphile-worker ${m.graphile_worker}, pg-boss ${m.pg_boss}, PostgreSQL ${m.postgres}, ` +
    `${m.cpus} x ${m.cpu}, load average ${R.load_start.split(" ")[0]} at the start, ${R.load_end.split(" ")[0]} at the end). ` +
    `Every system: the same cluster, ${R.params.conn === "tcp" ? "TCP loopback" : "unix socket"} for every client, ` +
    `${R.params.stats === "analyze" ? "VACUUM ANALYZE of its job tables" : "no statistics step"} after the bulk enqueue, the clock from worker start to the ` +
    `last completion seen in the database; ${d ? d.rounds : "?"} interleaved rounds of ${d ? L.fmt(d.n) : "?"} no-op jobs, medians (min-max), ratios per round.` +
    (R.params.quick ? " **Quick run on a shared, loaded machine: indicative only; the full run is still to be made.**" : ""));
  out.push("");
  const S = d ? d.summary : {};
  const cols = [["ours_default", "jobrunner, no flags (sandboxed, the default)"], ["ours_inproc_best", "jobrunner in-process, best flags"],
    ["gw_best", "graphile-worker, best settings"], ["boss_best", "pg-boss, best settings"]];
  const row = (label, f) => out.push(`| ${label} | ${cols.map(([k]) => f(k) ?? "").join(" | ")} |`);
  out.push(`| | ${cols.map((c) => c[1]).join(" | ")} |`);
  out.push(`|---|${cols.map(() => "---").join("|")}|`);
  if (d) {
    row("settings", (k) => (!S[k] ? "n/a" : k === "gw_best" ? describeGw(S[k]) : k === "boss_best" ? describeBoss(S[k])
      : `\`${S[k].settings.join(" ") || "(no flags)"}\``));
    row(`drain, ${L.fmt(d.n)} jobs: jobs/s, median (min-max)`, (k) => (S[k] ? `**${L.fmtRange(S[k].jobs_per_s)}**` : "n/a"));
    row("vs graphile-worker best, per round", (k) => (k === "gw_best" ? "" : ratioText(pairedRatioFrom(d, k, "gw_best"))));
    row("vs pg-boss best, per round", (k) => (k === "boss_best" ? "" : ratioText(pairedRatioFrom(d, k, "boss_best"))));
    row("load average during its drains", (k) => (S[k] ? L.fmtRange(S[k].load, 1) : ""));
  }
  if (P.limit) {
    const f = P.limit.floors;
    const sh = shares(R);
    const p = (v) => (v === null || v === undefined ? "" : `${(100 * v).toFixed(0)}%`);
    row("own physical floor (pgbench, same preparation), jobs/s", (k) => ({
      ours_default: f.ours_history ? `${L.fmtRange(f.ours_history.jobs_per_s)} (claim with lease + history row; ${L.fmtRange(f.ours_no_history && f.ours_no_history.jobs_per_s)} without the history row)` : "",
      ours_inproc_best: "same",
      gw_best: f.gw_min ? `${L.fmtRange(f.gw_min.jobs_per_s)} (claim + delete)` : "",
    })[k]);
    row("share of own floor", (k) => ({ ours_default: p(sh.ours_default_of_ours_history_floor), ours_inproc_best: p(sh.ours_inproc_best_of_ours_history_floor),
      gw_best: p(sh.gw_best_of_gw_floor) })[k]);
  }
  const l = P.latency;
  if (l) {
    const m2 = { ours_default: "ours_default", ours_inproc_best: "ours_inproc", gw_best: "gw_best", boss_best: "boss_best" };
    row(`latency at ${l.rate} jobs/s offered, enqueue commit -> start, p50 / p99 ms`, (k) => {
      const x = l.summary[m2[k]];
      return x ? `${L.fmtRange(x.p50_ms, 2)} / ${L.fmtRange(x.p99_ms, 2)} (${L.fmt(x.achieved_rate.median)}/s achieved)` : "";
    });
  }
  if (P.pressure) {
    const m2 = { ours_default: "ours_default", ours_inproc_best: "ours_inproc", gw_best: "gw", boss_best: "boss" };
    // The systems whose producers fell short of the offered rate: their cells do not test the goal.
    const names = { ours_default: "no flags", ours_inproc: "in-process", gw: "graphile-worker", boss: "pg-boss" };
    const short = Object.entries(P.pressure.summary)
      .filter(([, x]) => med(x.clean.achieved_enqueue_per_s) < 0.9 * P.pressure.offered_per_s)
      .map(([k]) => names[k] || k);
    row(`MVCC pressure, ${P.pressure.offered_per_s} single enqueues/s offered, 32 slots, ${P.pressure.seconds} s per cell: clean completed/s of enqueued/s; idle in transaction, repeatable-read readers as a share of clean (completed / enqueued)` +
      (short.length ? `; **the producers of ${short.join(", ")} did not reach ${P.pressure.offered_per_s}/s on this machine, so those cells do not test the goal**` : ""), (k) => {
      const x = P.pressure.summary[m2[k]];
      if (!x) return "";
      const c = (y) => `${pct(y.share_of_clean)} (${pct(y.kept_up)})`;
      return `${L.fmt(x.clean.completed_per_s.median)}/s of ${L.fmt(x.clean.achieved_enqueue_per_s.median)}/s; ${c(x.idle_in_tx)}; ${c(x.active_readers)}`;
    });
  }
  if (P.enqueue) {
    const e = P.enqueue;
    row("bulk enqueue, jobs/s (ours: CLI + COPY; addJobs; insert)", (k) => ({
      ours_default: `${L.fmtRange(e.bulk.ours)}${e.bulk.gw ? ` (${x2(med(e.bulk.ours) / med(e.bulk.gw))} addJobs)` : ""}`, ours_inproc_best: "same",
      gw_best: e.bulk.gw ? L.fmtRange(e.bulk.gw) : "", boss_best: e.bulk.boss ? L.fmtRange(e.bulk.boss) : "" })[k]);
  }
  out.push("");
  const extra = [];
  if (d && d.ratios.sandboxed_vs_inproc_same_flags) {
    extra.push(`sandboxed / in-process with the same flags (${S.ours_sandboxed_same.settings.slice(2).length ? "\`" + S.ours_sandboxed_same.settings.slice(2).join(" ") + "\`" : "no flags"}): ${ratioText(d.ratios.sandboxed_vs_inproc_same_flags)}`);
  }
  if (P.scale) extra.push(`claim rate with ${L.fmt(P.scale.big.n)} queued: ${(100 * P.scale.big_vs_small).toFixed(0)}% of a ${L.fmt(P.scale.small.n)}-job drain`);
  if (P.handoff) {
    const h = P.handoff.cells;
    const g = (c) => (c ? `${L.fmt(c.p50_ms, 0)} ms median (max ${L.fmt(c.max_ms, 0)})` : "n/a");
    extra.push(`handoff, ${P.handoff.jobs} jobs of ${P.handoff.sleep_ms} ms: next job with the same lock key starts ${g(h["lock_key/default"])} after the previous one completed, a child ${g(h["chain/default"])} after its parent (makespan ${L.fmtRange(h["lock_key/default"].makespan_ms)} ms, ideal ${P.handoff.ideal_makespan_ms})`);
  }
  if (extra.length) out.push(extra.map((x) => `${x[0].toUpperCase()}${x.slice(1)}.`).join(" "));
  return out.join("\n");
}

// Where the time goes per job (docs/performance.md): medians over the drain rounds.
function profileMarkdown(R) {
  const d = R.phases.drain;
  if (!d) return "";
  const f = (x, k = 2) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(k));
  const out = [];
  out.push("| per job (medians of the drain rounds) | " + Object.keys(d.summary).join(" | ") + " |");
  out.push("|---|" + Object.keys(d.summary).map(() => "---").join("|") + "|");
  const row = (label, g) => out.push(`| ${label} | ${Object.values(d.summary).map((s) => g(s.profile, s)).join(" | ")} |`);
  row("jobs/s", (p, s) => L.fmtRange(s.jobs_per_s));
  row("statements (pg_stat_statements calls)", (p) => f(p.statements_per_job, 4));
  row("round trips (client data segments, `ss -ti`)", (p) => f(p.round_trips_per_job, 4));
  row("request bytes sent to the server", (p) => f(p.request_bytes_per_job, 1));
  row("WAL bytes (pg_current_wal_lsn before/after)", (p) => f(p.wal_bytes_per_job, 0));
  row("shared blocks touched by its statements (hit + read)", (p) => f(p.blocks_per_job, 1));
  row("  heap / index blocks of its tables (pg_statio_user_tables)", (p) => `${f(p.heap_blocks_per_job, 1)} / ${f(p.index_blocks_per_job, 1)}`);
  row("blocks dirtied", (p) => f(p.dirtied_per_job, 3));
  row("server execution time (us, pg_stat_statements)", (p) => f(p.exec_us_per_job, 1));
  row("CPU us: worker process (runner / node)", (p) => f(p.cpu_us_per_job.worker_main, 1));
  row("CPU us: sandbox workers (jr-worker)", (p) => f(p.cpu_us_per_job.worker_children, 1));
  row("CPU us: its PostgreSQL backends", (p) => f(p.cpu_us_per_job.backends, 1));
  row("CPU us: rest of the server (walwriter, checkpointer, ...)", (p) => f(p.cpu_us_per_job.server_other, 1));
  row("backends", (p) => f(p.backends, 0));
  out.push("");
  out.push("Statements that cost the most server time (the median round of each configuration):");
  out.push("");
  out.push("| configuration | statement | calls per job | rows per call | us per job | blocks per job | WAL bytes per job |");
  out.push("|---|---|---|---|---|---|---|");
  for (const s of Object.values(d.summary)) {
    for (const t of s.profile.top.slice(0, 3)) {
      if (t.us_per_job < 0.5) continue;
      out.push(`| ${s.key} | \`${t.query.slice(0, 70).replace(/\|/g, "\\|")}\` | ${f(t.calls_per_job, 4)} | ${f(t.rows_per_call, 0)} | ${f(t.us_per_job, 1)} | ${f(t.blocks_per_job, 1)} | ${f(t.wal_bytes_per_job, 0)} |`);
    }
  }
  return out.join("\n");
}

function describeGw(s) {
  if (!s) return "";
  const x = s.settings;
  return `concurrentJobs ${x.concurrentJobs}, maxPoolSize ${x.maxPoolSize}, localQueue ${x.localQueue && x.localQueue.size}, completeJobBatchDelay ${x.completeJobBatchDelay}`;
}
function describeBoss(s) {
  if (!s) return "";
  const w = s.settings.work;
  return `batchSize ${w.batchSize}, localConcurrency ${w.localConcurrency}, burst, notify`;
}

function pairedRatioFrom(d, a, b) {
  const xa = d.summary[a];
  const xb = d.summary[b];
  if (!xa || !xb) return null;
  const ra = new Map(xa.rounds.map((x) => [x.round, x.jobs_per_s]));
  return L.summary(xb.rounds.filter((x) => ra.has(x.round)).map((x) => ra.get(x.round) / x.jobs_per_s));
}

function writeReadme(readme, R) {
  const text = fs.readFileSync(readme, "utf8");
  const begin = "<!-- bench:compare:begin -->";
  const end = "<!-- bench:compare:end -->";
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${readme}: markers ${begin} / ${end} not found`);
  fs.writeFileSync(readme, `${text.slice(0, i + begin.length)}\n${markdown(R)}\n${text.slice(j)}`);
}

module.exports = { print, markdown, profileMarkdown, goals, shares };

if (require.main === module) {
  const a = process.argv.slice(2);
  const load = (f) => {
    const t = fs.readFileSync(f, "utf8").trim();
    // A saved results file, or a whole run log whose last line is the JSON.
    try {
      return JSON.parse(t);
    } catch {
      return JSON.parse(t.split("\n").pop());
    }
  };
  if (a[0] === "--markdown") console.log(markdown(load(a[1])));
  else if (a[0] === "--profile-markdown") console.log(profileMarkdown(load(a[1])));
  else if (a[0] === "--readme") writeReadme(a[1], load(a[2]));
  else print(load(a[0]));
}
