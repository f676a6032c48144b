// bench/compare/report.js: turns the results object of compare.js into the human table and the
// final JSON line (always the last line of output). Pure formatting, no I/O besides stdout.
"use strict";

const L = require("./lib");

const ratio = (a, b) => (a && b ? a / b : null);
const round = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(d)));
const rate = (x) => (x ? x.jobs_per_s : null);

function print(R) {
  const P = R.phases;
  const d = P.drain || {};
  const e = P.enqueue || {};
  const l = P.latency || {};
  const s = P.scale || {};
  const lim = P.limit || {};
  const sb = P.sandbox || {};
  const rows = [];
  const row = (what, ours, gwv, bossv, note = "") => rows.push([what, ours, gwv, bossv, note]);
  const n = (x) => L.fmt(x);
  const x = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : "n/a");

  row("drain best (jobs/s)", n(rate(d.ours_best)), n(rate(d.gw_best)), n(rate(d.boss_best)),
    `ours ${d.ours_best ? d.ours_best.args : "?"}; vs gw ${x(rate(d.ours_best), rate(d.gw_best))}, vs boss ${x(rate(d.ours_best), rate(d.boss_best))}`);
  row("drain defaults (jobs/s)", n(rate(d.ours_defaults)), n(rate(d.gw_defaults)), n(rate(d.boss_defaults)),
    `ours in-process (--isolation none); vs gw ${x(rate(d.ours_defaults), rate(d.gw_defaults))}, vs boss ${x(rate(d.ours_defaults), rate(d.boss_defaults))}`);
  if (d.ours_defaults_sandboxed) {
    row("  ours defaults, sandboxed", n(rate(d.ours_defaults_sandboxed)), "", "",
      `--isolation sandbox (the default); vs gw ${x(rate(d.ours_defaults_sandboxed), rate(d.gw_defaults))}, vs boss ${x(rate(d.ours_defaults_sandboxed), rate(d.boss_defaults))}`);
  }
  row("enqueue bulk (jobs/s)", n(e.ours_bulk), n(e.gw_bulk), n(e.boss_bulk),
    `ours = runner enqueue --payload-file (CLI+COPY); vs addJobs ${x(e.ours_bulk, e.gw_bulk)}`);
  if (e.ours_bulk_store_only) row("  ours bulk, store call only", n(e.ours_bulk_store_only), "", "", "id reservation + COPY + commit, without CLI start-up and JSON parsing");
  row("enqueue single (jobs/s)", n(e.ours_single), n(e.gw_single), n(e.boss_single), "one statement per job, autocommit (ours: SELECT jr_enqueue() when the schema has it)");
  const lat = (v) => (v ? `${L.fmt(v.p50_ms, 2)} / ${L.fmt(v.p99_ms, 2)}` : "n/a");
  row(`latency p50/p99 ms @${R.params.rate}/s`, lat(l.ours), lat(l.gw), lat(l.boss), "enqueue call (ours: created_at) -> start");
  const clat = (v) => (v ? `${L.fmt(v.commit_p50_ms, 2)} / ${L.fmt(v.commit_p99_ms, 2)}` : "n/a");
  row("  same, from enqueue commit", clat(l.ours), clat(l.gw), clat(l.boss), "enqueue call returned -> start");
  if (l.ours_sandboxed) {
    row("  ours sandboxed, created_at / commit", `${lat(l.ours_sandboxed)}; ${clat(l.ours_sandboxed)}`, "", "", "--isolation sandbox");
  }
  if (s.small) {
    row(`claim rate, ${L.fmt(R.params.scaleSmall)} queued`, n(rate(s.small)), "", "", s.args || "defaults");
    row(`claim rate, ${L.fmt(R.params.scaleBig)} queued`, n(rate(s.big)), "", "",
      `big/small ${x(rate(s.big), rate(s.small))}`);
  }
  const rssMax = d.ours_best ? d.ours_best.rss_max_kb : null;
  row("runner RSS idle / load (MB)", `${L.fmt(l.ours ? l.ours.rss_idle_kb / 1024 : null, 1)} / ${L.fmt(rssMax / 1024, 1)}`, "", "", "");
  for (const k of ["1", "50", "500"]) {
    if (lim[k]) {
      row(`raw SQL claim+complete N=${k}`, n(lim[k].jobs_per_s), "", "",
        `pgbench -c ${lim[k].clients}; ours best = ${(100 * ratio(rate(d.ours_best), lim[k].jobs_per_s)).toFixed(0)}%`);
    }
  }
  if (sb.supported) {
    row("sandboxed vs in-process (jobs/s)", `${n(rate(sb.sandboxed))} / ${n(rate(sb.in_process))}`, "", "",
      `${x(rate(sb.sandboxed), rate(sb.in_process))}, same settings (${sb.args || "defaults"}), back to back`);
    row("sandboxed best (jobs/s)", n(rate(sb.sandboxed_best)), n(rate(d.gw_best)), n(rate(d.boss_best)),
      `${sb.sandboxed_best.args}; vs gw best ${x(rate(sb.sandboxed_best), rate(d.gw_best))}, vs boss best ${x(rate(sb.sandboxed_best), rate(d.boss_best))}`);
  } else if (P.sandbox) {
    row("sandboxed vs in-process", "n/a", "", "", sb.why || "no sandbox");
  }

  const w = [34, 22, 18, 18];
  const line = (r) => r.slice(0, 4).map((c, i) => String(c).padEnd(w[i])).join(" ") + " " + r[4];
  console.log("");
  console.log(`machine: ${R.machine.cpus} x ${R.machine.cpu}, ${R.machine.mem_gb} GB; PostgreSQL ${R.machine.postgres} ` +
    `(fsync ${R.machine.fsync}, synchronous_commit ${R.machine.synchronous_commit}, shared_buffers ${R.machine.shared_buffers})`);
  console.log(`versions: ${R.machine.runner}; graphile-worker ${R.machine.graphile_worker}; pg-boss ${R.machine.pg_boss}; node ${R.machine.node}`);
  console.log(`load average: start ${R.load_start}, end ${R.load_end}; ${R.started} .. ${R.finished}`);
  console.log(line(["", "ours", "graphile-worker", "pg-boss", "notes"]));
  for (const r of rows) console.log(line(r));

  const bestLimit = Math.max(...["1", "50", "500"].map((k) => (lim[k] ? lim[k].jobs_per_s : 0)));
  const out = {
    quick: R.params.drainJobs < 200000,
    throughput_vs_graphile_worker: round(ratio(rate(d.ours_best), rate(d.gw_best))),
    throughput_vs_pg_boss: round(ratio(rate(d.ours_best), rate(d.boss_best))),
    defaults_vs_graphile_worker_defaults: round(ratio(rate(d.ours_defaults), rate(d.gw_defaults))),
    defaults_vs_pg_boss_defaults: round(ratio(rate(d.ours_defaults), rate(d.boss_defaults))),
    latency_p50_ms: round(l.ours ? l.ours.p50_ms : null, 3),
    latency_p99_ms: round(l.ours ? l.ours.p99_ms : null, 3),
    enqueue_bulk_vs_graphile_worker: round(ratio(e.ours_bulk, e.gw_bulk)),
    sandboxed_vs_in_process: sb.supported ? round(ratio(rate(sb.sandboxed), rate(sb.in_process))) : null,
    sandboxed_note: sb.supported ? undefined : (sb.why || "sandbox phase not run"),
    sandboxed_best_vs_graphile_worker: sb.supported ? round(ratio(rate(sb.sandboxed_best), rate(d.gw_best))) : null,
    ours_sandboxed_best_jobs_per_s: sb.supported ? round(rate(sb.sandboxed_best), 0) : null,
    ours_sandboxed_best_args: sb.supported ? sb.sandboxed_best.args : null,
    ours_defaults_sandboxed_jobs_per_s: round(rate(d.ours_defaults_sandboxed), 0),
    defaults_sandboxed_vs_graphile_worker_defaults: round(ratio(rate(d.ours_defaults_sandboxed), rate(d.gw_defaults))),
    defaults_sandboxed_vs_pg_boss_defaults: round(ratio(rate(d.ours_defaults_sandboxed), rate(d.boss_defaults))),
    latency_sandboxed_p50_ms: round(l.ours_sandboxed ? l.ours_sandboxed.p50_ms : null, 3),
    latency_sandboxed_p99_ms: round(l.ours_sandboxed ? l.ours_sandboxed.p99_ms : null, 3),
    latency_sandboxed_from_commit_p99_ms: round(l.ours_sandboxed ? l.ours_sandboxed.commit_p99_ms : null, 3),
    fraction_of_raw_sql_limit: round(ratio(rate(d.ours_best), bestLimit || null)),
    ours_best_jobs_per_s: round(rate(d.ours_best), 0),
    ours_defaults_jobs_per_s: round(rate(d.ours_defaults), 0),
    graphile_worker_best_jobs_per_s: round(rate(d.gw_best), 0),
    graphile_worker_defaults_jobs_per_s: round(rate(d.gw_defaults), 0),
    pg_boss_best_jobs_per_s: round(rate(d.boss_best), 0),
    pg_boss_defaults_jobs_per_s: round(rate(d.boss_defaults), 0),
    enqueue_bulk_jobs_per_s: round(e.ours_bulk, 0),
    enqueue_bulk_store_only_jobs_per_s: round(e.ours_bulk_store_only, 0),
    graphile_worker_add_jobs_per_s: round(e.gw_bulk, 0),
    graphile_worker_latency_p50_ms: round(l.gw ? l.gw.p50_ms : null, 3),
    pg_boss_latency_p50_ms: round(l.boss ? l.boss.p50_ms : null, 3),
    latency_from_commit_p50_ms: round(l.ours ? l.ours.commit_p50_ms : null, 3),
    latency_from_commit_p99_ms: round(l.ours ? l.ours.commit_p99_ms : null, 3),
    claim_rate_small_queue: round(rate(s.small), 0),
    claim_rate_big_queue: round(rate(s.big), 0),
    raw_sql_jobs_per_s: { n1: round(rate(lim["1"]), 0), n50: round(rate(lim["50"]), 0), n500: round(rate(lim["500"]), 0) },
    rss_idle_kb: l.ours ? l.ours.rss_idle_kb : null,
    rss_load_kb: rssMax,
    load_avg: R.load_end,
  };
  console.log(JSON.stringify(out));
}

module.exports = { print };
