// bench/compare/ours.js: driver for our `runner` binary (enqueue through the CLI's COPY path,
// drain and latency with the echo plugin) against database "jr" of the shared throwaway
// cluster. Timings of processed jobs come from jr_jobs_done (database clock), so polling
// granularity does not enter them. Single-threaded (the event loop).
"use strict";

const fs = require("fs");
const path = require("path");
const L = require("./lib");

const DB = "jr";

class Ours {
  constructor(runner, echoSo, clusterUrl, work) {
    this.runner = runner;
    this.url = L.urlFor(clusterUrl, DB);
    this.clusterUrl = clusterUrl;
    this.work = work;
    this.plugins = path.join(work, "plugins");
    fs.mkdirSync(this.plugins, { recursive: true });
    // A copy, not a symlink: a sandboxed plugin may only read inside its plugin directory.
    fs.copyFileSync(path.resolve(echoSo), path.join(this.plugins, "libjr_echo.so"));
    this.env = { ...process.env, DATABASE_URL: this.url };
  }

  async setup() {
    await L.recreateDb(this.clusterUrl, DB);
    const r = L.run(this.runner, ["migrate"], { env: this.env });
    if (r.code !== 0) throw new Error(`runner migrate failed: ${r.stderr}`);
    this.db = await L.connect(this.clusterUrl, DB);
    // SQL producers: jr_enqueue() where the schema has it (migration v5), else a plain INSERT.
    this.hasEnqueueFn = Boolean(await L.q1(this.db, "SELECT to_regprocedure('jr_enqueue(text,jsonb,jsonb)') IS NOT NULL"));
    this.insertSql = (queue, kind) => (this.hasEnqueueFn
      ? `SELECT jr_enqueue('${kind}', '{}'::jsonb, '{"queue": "${queue}"}'::jsonb) AS id`
      : `INSERT INTO jr_jobs (queue, kind, payload) VALUES ('${queue}', '${kind}', '{}') RETURNING id`);
  }

  async close() {
    if (this.db) await this.db.end();
  }

  async reset() {
    await this.db.query("TRUNCATE jr_jobs, jr_jobs_done");
    await this.db.query("VACUUM ANALYZE jr_jobs");
  }

  payloadFile(n) {
    const f = path.join(this.work, `payload-${n}.jsonl`);
    if (!fs.existsSync(f)) fs.writeFileSync(f, "{}\n".repeat(n));
    return f;
  }

  // `runner enqueue echo --payload-file F`: process start, file parse, COPY, commit. jobs/s.
  enqueueCli(n) {
    const f = this.payloadFile(n);
    const r = L.run(this.runner, ["enqueue", "echo", "--payload-file", f, "--log-level", "info"],
      { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    if (r.code !== 0) throw new Error(`runner enqueue failed: ${r.stderr}`);
    // The CLI logs the rate of its store call alone (id reservation + COPY + commit).
    const m = /"jobs_per_second":([0-9.e+]+)/.exec(r.stderr);
    this.lastStoreRate = m ? Number(m[1]) : null;
    return n / r.seconds;
  }

  // Large queues: CLI enqueue in chunks of 200,000 (one COPY each).
  enqueueMany(n) {
    let secs = 0;
    for (let i = 0; i < n; i += 200000) {
      const m = Math.min(200000, n - i);
      secs += m / this.enqueueCli(m);
    }
    return n / secs;
  }

  // Single-row enqueue as an application does it: one statement per job, autocommit.
  async enqueueSingle(n) {
    const t = L.nowMs();
    for (let i = 0; i < n; ++i) {
      await this.db.query(this.insertSql("single", "echo_single"));
    }
    const rate = n / ((L.nowMs() - t) / 1000);
    await this.db.query("DELETE FROM jr_jobs WHERE kind = 'echo_single'");
    return rate;
  }

  // Always with an explicit --isolation (the default changes between versions): "none" runs the
  // plugin in-process, "sandbox" in confined worker processes. args may carry their own.
  startRunner(args, tag) {
    const logFile = path.join(this.work, `runner-${tag}.log`);
    const iso = args.includes("--isolation") ? [] : ["--isolation", "none"];
    return L.start(this.runner, ["--plugins", this.plugins, "--log-level", "warn", ...iso, ...args],
      { env: this.env }, logFile);
  }

  async doneStats() {
    const r = await this.db.query(
      "SELECT count(*)::bigint AS n, extract(epoch from max(finished_at) - min(started_at)) AS s FROM jr_jobs_done");
    return { n: Number(r.rows[0].n), s: Number(r.rows[0].s) };
  }

  // Processes the jobs already queued (n of them) with `args`; stops when jr_jobs is empty or
  // after maxSeconds. jobs/s = finished / (last finished_at - first started_at).
  async drainQueued(n, args, maxSeconds, tag) {
    await this.db.query("TRUNCATE jr_jobs_done");
    await this.db.query("SELECT pg_stat_statements_reset()").catch(() => {});
    const child = this.startRunner(args, tag);
    const deadline = L.nowMs() + maxSeconds * 1000;
    let rssMax = 0;
    let kidsMax = 0;
    for (;;) {
      await L.sleep(250);
      rssMax = Math.max(rssMax, L.rssKb(child.pid) ?? 0);
      kidsMax = Math.max(kidsMax, L.childCount(child.pid));
      if (child.exitCode !== null) throw new Error(`runner exited (${tag}); see ${this.work}/runner-${tag}.log`);
      // Index-only probes (partial indexes on available / running jobs): a count(*) here
      // would scan the whole queue and steal database time from the run it measures.
      const busy = Number(await L.q1(this.db, `SELECT (SELECT count(*) FROM (SELECT 1 FROM jr_jobs
        WHERE state = 'available' LIMIT 1) a) + (SELECT count(*) FROM (SELECT 1 FROM jr_jobs
        WHERE state = 'running' LIMIT 1) b)`));
      if (busy === 0 || L.nowMs() > deadline) break;
    }
    await L.stop(child);
    const st = await this.doneStats();
    return { jobs_per_s: st.s > 0 ? st.n / st.s : null, done: st.n, seconds: st.s, capped: st.n < n,
      rss_max_kb: rssMax, children_max: kidsMax };
  }

  async drain(n, args, maxSeconds, tag) {
    await this.reset();
    const enqueue = this.enqueueCli(n);
    const r = await this.drainQueued(n, args, maxSeconds, tag);
    r.enqueue_jobs_per_s = enqueue;
    return r;
  }

  // Steady `rate` jobs/s from a small client pool while the runner idles on LISTEN; latency is
  // started_at (claim) - created_at (insert), both from the database clock.
  async latency(rate, seconds, args, tag = "latency") {
    await this.reset();
    const child = this.startRunner(args, tag);
    await L.sleep(2000);
    const rssIdle = L.rssKb(child.pid);
    const pool = new L.pg.Pool({ ...L.pgConfig(this.clusterUrl, DB), max: 16 });
    await Promise.all([...Array(16).keys()].map(() => pool.query("SELECT 1")));
    const committed = new Map();
    const total = Math.round(rate * seconds);
    const sent = await L.paced(rate, total, () =>
    pool.query(this.insertSql("default", "echo"))
        .then((r) => committed.set(Number(r.rows[0].id), L.nowMs())));
    const deadline = L.nowMs() + 30000;
    while (Number(await L.q1(this.db, "SELECT count(*) FROM jr_jobs_done")) < total - sent.failed && L.nowMs() < deadline) {
      await L.sleep(50);
    }
    await L.stop(child);
    await pool.end();
    const r = await this.db.query(`SELECT
        percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch from started_at - created_at)) * 1000 AS p50,
        percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch from started_at - created_at)) * 1000 AS p99,
        count(*) AS n FROM jr_jobs_done`);
    const st = await this.db.query("SELECT id, extract(epoch from started_at) * 1000 AS s FROM jr_jobs_done");
    const fromCommit = st.rows.filter((x) => committed.has(Number(x.id)))
      .map((x) => Number(x.s) - committed.get(Number(x.id))).sort((a, b) => a - b);
    return { p50_ms: Number(r.rows[0].p50), p99_ms: Number(r.rows[0].p99), n: Number(r.rows[0].n), sent: total, ...sent,
      commit_p50_ms: L.percentile(fromCommit, 0.5), commit_p99_ms: L.percentile(fromCommit, 0.99), rss_idle_kb: rssIdle };
  }

  // The statements that cost the most database time during the last drain (pg_stat_statements).
  async topStatements(limit = 6) {
    try {
      const r = await this.db.query(`SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
          round(mean_exec_time::numeric, 3) AS mean_ms, rows,
          regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY total_exec_time DESC LIMIT $1`, [limit]);
      return r.rows;
    } catch {
      return [];
    }
  }
}

module.exports = { DB, Ours };
